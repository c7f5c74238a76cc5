"""The two doors every command prints through (pdpp_orch/cli/inert.py): on a terminal, only the
console's own styling leaves them; a connector's control characters, links and broken markup
are shown as text."""

from __future__ import annotations

import io
import json
import re

from rich.table import Table
from rich.text import Text

from pdpp_orch.cli.inert import InertConsole, InertStream

HOSTILE = "ok\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x1b]0;pwned\x07 \x1b[2J\x07\r\x9b31m \u202eexe"
# What rich itself writes on a terminal: colours and styles (SGR), nothing else here.
OWN = re.compile(r"\x1b\[[0-9;]*m")
ACTIVE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


def test_a_terminal_gets_only_the_console_s_own_styling() -> None:
    buf = io.StringIO()
    console = InertConsole(file=buf, width=200, force_terminal=True, color_system="truecolor")
    console.print(f"[red]error:[/red] {HOSTILE}")
    console.print(Text(HOSTILE, style="bold"))
    console.print(f"[link=https://evil.example]sign in again[/link] {HOSTILE}")
    console.print(f"a reason with broken markup [/x] {HOSTILE}")  # printed, not raised
    table = Table("reason", "count")
    table.add_row(HOSTILE, "1")
    console.print(table)
    written = buf.getvalue()
    assert "\x1b[31m" in written  # its own styling is there
    shown = OWN.sub("", written)
    assert not ACTIVE.search(shown), repr(written)
    assert "\x1b]8" not in written  # no hyperlink, the connector's or from markup
    assert "\\u001b]0;pwned\\u0007" in shown and "[/x]" in shown


def test_what_is_printed_past_the_console_is_inert_and_json_stays_the_same_json() -> None:
    raw = io.StringIO()
    stream = InertStream(raw)
    document = {"reason": HOSTILE, "n": 1}
    stream.write(json.dumps(document, ensure_ascii=False) + "\n")
    stream.write(f"a log line: {HOSTILE}\n")
    written = raw.getvalue()
    assert not ACTIVE.search(written.replace("\n", ""))
    assert json.loads(written.splitlines()[0]) == document
    assert stream.rich_proxied_file is raw  # the consoles write past it


def test_records_bytes_on_a_terminal_are_made_visible_even_split_mid_character() -> None:
    # `records --format jsonl` writes PostgreSQL's bytes as they come: JSON escapes ESC but not
    # a C1 CSI (U+009B, two bytes in UTF-8) or a bidi override, which a chunk may split.
    from pdpp_orch.cli.inert import InertBytes

    raw = io.BytesIO()
    sink = InertBytes(raw)
    line = json.dumps({"k": "a\u009b31m \u202eexe"}, ensure_ascii=False).encode()
    cut = line.index("\u009b".encode()) + 1
    sink.write(line[:cut])
    sink.write(line[cut:] + b"\n")
    shown = raw.getvalue().decode()
    assert not ACTIVE.search(shown), shown
    assert "31m" in shown and "exe" in shown
