"""A connector's words — its skip reasons, messages, stderr, the lines we quarantine — are a
stranger's (DESIGN §14): bounded before they enter facts or Temporal history, and made inert
wherever they are shown: control characters visible on a terminal, no markup in the web UI's
Markdown. Pure functions; the CLI, the web UI's texts and the HTML report all use these."""

from __future__ import annotations

import re
import unicodedata

# A skip reason is a short code (`rate_limited`): the first 64 characters of a longer one are
# kept, marked as cut.
MAX_REASON_CHARS = 64
# A run's facts count skips under at most this many (stream, reason) pairs; any further pair is
# counted under its stream's OTHER_REASONS (the gap ledger keeps each miss's own reason).
MAX_REASON_PAIRS = 64
OTHER_REASONS = "other_reasons"
CUT = "…"

# Characters a terminal or a text view acts on rather than shows: C0 and C1 controls, DEL, and
# the invisible format characters that reorder or hide text (bidi overrides, zero widths, line
# and paragraph separators). Tab and newline are text.
_FORMAT = "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
_ACTIVE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMAT}]")
_ACTIVE_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT}]")
# What CommonMark lets a backslash escape: every ASCII punctuation character — but `/`, which
# Temporal's web UI shows with its backslash (tests/e2e/test_web_ui.py), and which makes no link
# or markup once `:` and `.` are escaped.
_MARKDOWN = re.compile(r"""([!"#$%&'()*+,\-.:;<=>?@\[\\\]^_`{|}~])""")
# A word of letters, digits, `_` and `-` (a reason code, a stream name) is no link and no markup
# (an underscore inside a word is no emphasis): shown as it is, where escaping it would show its
# backslashes (the web UI's timeline reads a summary as text).
_PLAIN_WORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")


def bounded(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked."""
    return text if len(text) <= limit else text[: limit - 1] + CUT


def reason(text: str) -> str:
    """A connector's skip reason as facts, gaps and history keep it."""
    return bounded(text, MAX_REASON_CHARS)


def _shown(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def visible(text: str) -> str:
    """`text` with every character a terminal would act on written out (`\\u001b`, `\\u202e`):
    an escape sequence, a bell or a bidi override from a connector is shown, never performed.
    The escape is JSON's own, so JSON printed this way still reads as the same JSON."""
    return _ACTIVE.sub(_shown, text) if _ACTIVE.search(text) else text


def visible_line(text: str) -> str:
    """`visible`, newlines and tabs written out too: one line."""
    return _ACTIVE_IN_LINE.sub(_shown, text)


def markdown(text: str) -> str:
    """`text` as literal Markdown: on one line, visible, every punctuation character escaped,
    so a connector's `[sign in](https://…)`, `<b>`, `**` or bare URL is text, never a link or
    markup; a plain word (`rate_limited`) as it is."""
    if _PLAIN_WORD.fullmatch(text):
        return text
    return _MARKDOWN.sub(r"\\\1", visible_line(unicodedata.normalize("NFC", text)))
