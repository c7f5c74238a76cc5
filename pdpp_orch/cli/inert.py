"""Safe to print (DESIGN §14): a connector's words reach the operator's terminal in many commands
(its skip reasons, errors, stderr, quarantined lines, prompts), and a terminal acts on control
characters — clear the screen, set the window title, plant a hyperlink. Everything a command
writes passes one of two doors, both here, so no command (today's or a new one) can emit them:

- the consoles (`cli.common.out`, `err`): every piece of text they render is made visible
  (`words.visible`), hyperlinks are dropped and markup that does not parse is printed as text;
  their own styling and cursor movements (progress bars) are theirs, and go out as such;
- the process's stdout and stderr (`install`, first thing `pdpp-orch` does): what `print()`,
  logging or a library writes is made visible too;
- bytes written straight to stdout's buffer (`records --format jsonl|json|csv`, at COPY speed)
  pass `terminal_bytes`, made visible when stdout is a terminal (JSON escapes C0 controls, not
  C1 ones or bidi overrides) and left exact for a pipe or a file.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.errors import MarkupError
from rich.segment import Segment
from rich.text import Text

from pdpp_orch.words import visible


class InertConsole(Console):
    """A rich Console that shows control characters instead of performing them."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        # The one method every rendering passes through on its way to the terminal (a private
        # one of rich's: tests/unit/test_inert.py holds it to its word).
        return super()._render_buffer(_inert(buffer))

    def on_broken_pipe(self) -> None:
        """The reader of a pipe closed it (`pdpp-orch records X | head`): it has what it wanted,
        which is no failure (rich exits 1 here)."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """A string as text: its control characters made visible before rich strips some (a
        bell, a carriage return) unseen; markup a connector broke (`[/x]` in a reason) printed
        as it is, not raised."""
        text = visible(text)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            return super().render_str(text, **{**kwargs, "markup": False})


def _inert(buffer: Iterable[Segment]) -> Iterator[Segment]:
    for text, style, control in buffer:
        if control:
            yield Segment(text, style, control)  # rich's own cursor movements
            continue
        if style is not None and style.link:
            style = style.update_link(None)
        yield Segment(visible(text), style)


class InertStream:
    """A text stream whose writes are made visible. Rich's consoles write past it to the stream
    it wraps (`rich_proxied_file`): their text is made visible as they render it."""

    def __init__(self, raw: TextIO):
        self.rich_proxied_file = raw

    def write(self, text: str) -> int:
        self.rich_proxied_file.write(visible(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich_proxied_file, name)


def install() -> None:
    """Make the process's stdout and stderr inert (idempotent)."""
    if not isinstance(sys.stdout, InertStream):
        sys.stdout = InertStream(sys.stdout)
    if not isinstance(sys.stderr, InertStream):
        sys.stderr = InertStream(sys.stderr)


class ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class InertBytes:
    """A byte stream to a terminal whose writes are made visible (a multi-byte character split
    across two writes is decoded whole)."""

    def __init__(self, raw: ByteSink):
        self.raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> int:
        self.raw.write(visible(self._decoder.decode(data)).encode())
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def terminal_bytes() -> ByteSink:
    """Stdout's byte stream: inert on a terminal, exact elsewhere."""
    raw = sys.stdout.buffer
    return InertBytes(raw) if sys.stdout.isatty() else raw
