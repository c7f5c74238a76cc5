"""Encrypted Temporal payloads: AES-256-GCM with key ids, so keys rotate and old histories still
decrypt.

Keys come from `PDPP_ENCRYPTION_KEYS` (`KEY_ID=BASE64,KEY_ID=BASE64`) or the file named by
`PDPP_ENCRYPTION_KEY_FILE` (one `KEY_ID=BASE64` per line, `#` comments). The first key encrypts;
every key decrypts. With no key configured, payloads are plain JSON (DESIGN §5 keeps records
and cursors out of history either way; encryption covers counts, ids and failure messages too).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from pdpp_orch.manifest import ConfigError

ENCODING = b"binary/encrypted"
CIPHER = b"AES256-GCM"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class Keyring:
    """Named 256-bit keys; `active` encrypts."""

    keys: dict[str, bytes]
    active: str

    @classmethod
    def parse(cls, entries: Sequence[str], source: str) -> Keyring:
        """Keys from `KEY_ID=BASE64` entries; errors name `source` and the entry's key id,
        never a key."""
        keys: dict[str, bytes] = {}
        for raw in entries:
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            kid, sep, b64 = entry.partition("=")
            kid = kid.strip()
            if not sep or not _KEY_ID.match(kid):
                raise ConfigError(f"{source}: each key is KEY_ID=BASE64 with KEY_ID of [A-Za-z0-9_.-]")
            try:
                key = base64.b64decode(b64.strip(), validate=True)
            except ValueError:
                raise ConfigError(f"{source}: key {kid!r} is not valid base64") from None
            if len(key) != 32:
                raise ConfigError(f"{source}: key {kid!r} is {len(key)} bytes; AES-256 needs 32")
            if kid in keys:
                raise ConfigError(f"{source}: key id {kid!r} appears twice")
            keys[kid] = key
        if not keys:
            raise ConfigError(f"{source}: no key")
        return cls(keys=keys, active=next(iter(keys)))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Keyring | None:
        """The configured keyring, or None when encryption is off."""
        env = os.environ if environ is None else environ
        if env.get("PDPP_ENCRYPTION_KEYS"):
            return cls.parse(env["PDPP_ENCRYPTION_KEYS"].split(","), "PDPP_ENCRYPTION_KEYS")
        if env.get("PDPP_ENCRYPTION_KEY_FILE"):
            path = Path(env["PDPP_ENCRYPTION_KEY_FILE"])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise ConfigError(f"PDPP_ENCRYPTION_KEY_FILE {path}: {e.strerror}") from None
            return cls.parse(lines, str(path))
        return None


def new_key_entry(key_id: str) -> str:
    """A fresh `KEY_ID=BASE64` entry."""
    if not _KEY_ID.match(key_id):
        raise ConfigError("a key id is 1–64 characters of [A-Za-z0-9_.-]")
    return f"{key_id}={base64.b64encode(secrets.token_bytes(32)).decode()}"


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the active key; decrypts with the key its metadata names.
    Payloads that are not ours (plain ones written before encryption was turned on) pass
    through, so turning encryption on does not strand running workflows."""

    def __init__(self, keyring: Keyring):
        self.keyring = keyring
        self._ciphers = {kid: AESGCM(key) for kid, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        kid = self.keyring.active
        cipher = self._ciphers[kid]
        out = []
        for p in payloads:
            nonce = secrets.token_bytes(NONCE_BYTES)
            # The key id is authenticated with the data: a payload cannot be relabelled.
            sealed = cipher.encrypt(nonce, p.SerializeToString(), kid.encode())
            out.append(
                Payload(
                    metadata={
                        "encoding": ENCODING,
                        "encryption-cipher": CIPHER,
                        "encryption-key-id": kid.encode(),
                    },
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(p)
                continue
            kid = p.metadata.get("encryption-key-id", b"").decode()
            cipher = self._ciphers.get(kid)
            if cipher is None:
                raise ValueError(f"payload encrypted with key {kid!r}, which is not configured")
            plain = cipher.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], kid.encode())
            decoded = Payload()
            decoded.ParseFromString(plain)
            out.append(decoded)
        return out


def data_converter(keyring: Keyring | None) -> DataConverter:
    """The project's converter: pydantic payloads, encrypted (failure messages and stack traces
    included) when a keyring is configured."""
    if keyring is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
