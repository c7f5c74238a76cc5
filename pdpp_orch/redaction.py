"""No secret echoed (DESIGN §14): the values the worker resolved for a connector (its `env:` and
`file:` references) are cut out of whatever the connector says before it is stored — its stderr,
its error, the lines we quarantine, its gaps' errors, its prompts — in the forms a program
prints them (as is, base64, hex, URL- or JSON-escaped), with what obviously is a credential
(`token=…`, `Authorization: Bearer …`, `https://user:pass@host`, a PEM block)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
# Shorter values are not cut out: they would cut up ordinary text ("1", "yes"), and are not
# secrets worth the name.
MIN_SECRET_CHARS = 6
# A secret cut off at the end of a bounded text (a stderr line, an excerpt) still gives its
# beginning away: a text that ends with this much of one is cut there too.
MIN_PREFIX_CHARS = 6
_MARKERS = r"authorization|bearer|token|access[_-]?token|password|passwd|pwd|cookie|secret|otp|api[_-]?key"
# `token=abc`, `"password": "abc"`, `Authorization: Bearer abc`: the marker stays, the value goes.
_KEYED = re.compile(
    rf"""(\b(?:{_MARKERS})\b["']?\s*[:=]\s*(?:bearer\s+|basic\s+)?["']?)[^"'\s,;}}&]+""", re.IGNORECASE
)
_BEARER = re.compile(r"(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^@\s/]+@", re.IGNORECASE)
# To its END line, or (cut off) to the end of the text or of the JSON string it is in.
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|[^\"]*)", re.DOTALL)


def encodings(secret: str) -> set[str]:
    """The forms a program is likely to print `secret` in."""
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    url64 = base64.urlsafe_b64encode(raw).decode()
    forms = {
        secret,
        b64,
        b64.rstrip("="),
        url64.rstrip("="),
        binascii.hexlify(raw).decode(),
        binascii.hexlify(raw).decode().upper(),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *secret.splitlines(),  # a key file's lines, printed one by one
    }
    return {f.strip() for f in forms if len(f.strip()) >= MIN_SECRET_CHARS}


class Redactor:
    """Cuts one connector's resolved secrets, and anything shaped like a credential, out of
    text. `Redactor()` (no secrets) still cuts out the shapes."""

    def __init__(self, secrets: Iterable[str] = ()):
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        forms = sorted({f for s in values for f in encodings(s)}, key=len, reverse=True)
        self._forms = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._all = forms

    def __call__(self, text: str) -> str:
        if self._forms is not None:
            text = self._forms.sub(REDACTED, text)
            text = self._cut_tail(text)
        text = _PEM.sub("[REDACTED PEM]", text)
        text = _USERINFO.sub(rf"\1{REDACTED}@", text)
        text = _BEARER.sub(rf"\1{REDACTED}", text)
        return _KEYED.sub(rf"\1{REDACTED}", text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def _cut_tail(self, text: str) -> str:
        """`text` without the beginning of a secret it ends with (at least MIN_PREFIX_CHARS of it)."""
        for form in self._all:
            head = form[:MIN_PREFIX_CHARS]
            start = max(0, len(text) - len(form) + 1)
            i = text.find(head, start)
            while i != -1:
                if form.startswith(text[i:]):
                    return text[:i] + REDACTED
                i = text.find(head, i + 1)
        return text
