"""The payload codec and the codec server: AES-256-GCM with key ids, rotation, clear errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from temporalio.api.common.v1 import Payload

from pdpp_orch.codec import EncryptionCodec, Keyring, new_key_entry
from pdpp_orch.codec_server import make_app
from pdpp_orch.manifest import ConfigError

MARKER = "codec-marker-5d1e"


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"note": text}).encode())


def keyring(*ids: str) -> Keyring:
    return Keyring.parse([new_key_entry(i) for i in ids], "test")


async def test_payloads_are_sealed_and_open_again() -> None:
    codec = EncryptionCodec(keyring("k1"))
    [sealed] = await codec.encode([payload(MARKER)])
    assert MARKER.encode() not in sealed.SerializeToString()
    assert sealed.metadata["encryption-key-id"] == b"k1"
    [opened] = await codec.decode([sealed])
    assert opened == payload(MARKER)
    # A fresh nonce each time: the same payload never seals to the same bytes.
    [again] = await codec.encode([payload(MARKER)])
    assert again.data != sealed.data


async def test_rotation_keeps_old_histories_readable() -> None:
    old = Keyring.parse([new_key_entry("2026-10")], "old")
    [sealed_old] = await EncryptionCodec(old).encode([payload(MARKER)])
    new_entry = new_key_entry("2026-11")
    rotated = Keyring.parse(
        [new_entry, f"2026-10={base64.b64encode(old.keys['2026-10']).decode()}"], "rotated"
    )
    codec = EncryptionCodec(rotated)
    [sealed_new] = await codec.encode([payload(MARKER)])
    assert sealed_new.metadata["encryption-key-id"] == b"2026-11"
    assert await codec.decode([sealed_old, sealed_new]) == [payload(MARKER), payload(MARKER)]
    # Dropping the old key too early is a clear error, not garbage.
    with pytest.raises(ValueError, match="key '2026-10', which is not configured"):
        await EncryptionCodec(Keyring.parse([new_entry], "new only")).decode([sealed_old])


async def test_tampered_or_relabelled_payloads_do_not_decrypt() -> None:
    ring = keyring("a", "b")
    codec = EncryptionCodec(ring)
    [sealed] = await codec.encode([payload(MARKER)])
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"b"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
            await codec.decode([bad])
    # Plain payloads written before encryption was turned on pass through.
    assert await codec.decode([payload("plain")]) == [payload("plain")]


def test_bad_keys_are_clear_errors_that_never_echo_the_key(tmp_path: Path) -> None:
    short = base64.b64encode(b"x" * 16).decode()
    cases = {
        f"k1={short}": "is 16 bytes; AES-256 needs 32",
        "k1=not base64!": "is not valid base64",
        "no-equals-sign": "KEY_ID=BASE64",
        f"{new_key_entry('k1')},{new_key_entry('k1')}": "appears twice",
    }
    for value, message in cases.items():
        with pytest.raises(ConfigError, match=message) as e:
            Keyring.from_env({"PDPP_ENCRYPTION_KEYS": value})
        assert short not in str(e.value)
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# newest first\n{new_key_entry('k2')}\n{new_key_entry('k1')}\n")
    ring = Keyring.from_env({"PDPP_ENCRYPTION_KEY_FILE": str(keyfile)})
    assert ring is not None and (ring.active, sorted(ring.keys)) == ("k2", ["k1", "k2"])
    with pytest.raises(ConfigError, match="No such file"):
        Keyring.from_env({"PDPP_ENCRYPTION_KEY_FILE": str(tmp_path / "missing")})
    assert Keyring.from_env({}) is None


async def test_codec_server_decodes_for_bearers_of_the_token_and_answers_cors() -> None:
    codec = EncryptionCodec(keyring("k1"))
    [sealed] = await codec.encode([payload(MARKER)])
    body = json.dumps(
        {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                    "data": base64.b64encode(sealed.data).decode(),
                }
            ]
        }
    )
    ui = "http://localhost:8233"
    async with TestClient(TestServer(make_app(codec, "s3cret", [ui]))) as http:
        denied = await http.post("/decode", data=body, headers={"Origin": ui})
        assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == ui
        wrong = await http.post("/decode", data=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        assert (await http.get("/health")).status == 200  # probes carry no token

        ok = await http.post(
            "/decode", data=body, headers={"Authorization": "Bearer s3cret", "X-Namespace": "default"}
        )
        assert ok.status == 200
        [p] = (await ok.json())["payloads"]
        assert json.loads(base64.b64decode(p["data"])) == {"note": MARKER}

        preflight = await http.options(
            "/decode",
            headers={
                "Origin": ui,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status == 204
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        other = await http.options("/decode", headers={"Origin": "http://evil.test"})
        assert "Access-Control-Allow-Origin" not in other.headers

        garbage = await http.post("/decode", data="{nope", headers={"Authorization": "Bearer s3cret"})
        assert garbage.status == 400
        # /encode then /decode round-trips through the server alone.
        enc = await http.post(
            "/encode",
            data=json.dumps(
                {
                    "payloads": [
                        {
                            "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                            "data": base64.b64encode(b'"x"').decode(),
                        }
                    ]
                }
            ),
            headers={"Authorization": "Bearer s3cret"},
        )
        sealed_json = await enc.json()
        assert base64.b64decode(sealed_json["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
        dec = await http.post(
            "/decode", data=json.dumps(sealed_json), headers={"Authorization": "Bearer s3cret"}
        )
        assert base64.b64decode((await dec.json())["payloads"][0]["data"]) == b'"x"'
