"""How `--help` reads, set in one place for the whole command tree: docstrings and option help
as paragraphs (the source's hard line breaks joined, blank lines and list items kept), square
brackets shown as written instead of read as Rich markup, arguments in capitals, and each
option's type as a word (TEXT, INTEGER, PATH, `a|b|c`), or nothing for a flag, where typer
would print `<bool>` or `<list[str]>`."""

from __future__ import annotations

import inspect
import os
import re
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from pdpp_orch.cli import complete

# A line that starts a list item keeps its line break.
_LIST_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s")
_TYPE_WORDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "file": "FILE",
    "dir": "DIR",
    "datetime": "TIME",
}
_LIST_OF = re.compile(r"list\[(.*)\]")


def reflow(text: str) -> str:
    """`text` as paragraphs: lines joined within a paragraph unless a line starts a list item."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.split("\n"):
            if lines and not _LIST_ITEM.match(line.strip()):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _shown(text: str) -> str:
    """Help as Rich prints it: reflowed, with `[` escaped so that `[env: X]` stays visible."""
    return reflow(text).replace("[", r"\[")


def type_word(shown: str | None) -> str | None:
    """typer's `<str>`, `<list[str]>`, `<a|b>` as TEXT, TEXT, a|b; None when it is not that."""
    if not shown or not (shown.startswith("<") and shown.endswith(">")):
        return None
    inner = shown[1:-1]
    listed = _LIST_OF.fullmatch(inner)
    if listed:
        inner = listed.group(1)
    return _TYPE_WORDS.get(inner, inner)


def _polish_param(param: Any, ctx: Any) -> None:
    if getattr(param, "help", None):
        param.help = _shown(param.help)
    if param.metavar is not None:
        return
    if getattr(param, "param_type_name", "") == "argument":
        param.metavar = param.name.upper()
        if hasattr(param, "display_type_rich"):
            # Its name says what it is; a type only when it is not text.
            word = type_word(param.display_type_rich(ctx))
            param.display_type_rich = lambda ctx, w=(None if word == "TEXT" else word): w
    elif getattr(param, "is_flag", False):
        param.metavar = ""  # a flag takes no value: no type to show
    elif hasattr(param, "display_type_rich"):
        param.metavar = type_word(param.display_type_rich(ctx))


def polish(command: Any) -> None:
    """Apply the rules above to `command` and everything under it (idempotent)."""
    if getattr(command, "_polished", False):
        return
    command._polished = True
    if command.help:
        command.help = _shown(command.help)
    ctx = typer.Context(command)
    # --help is made on demand, once: made here, it is polished with the rest.
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is not None:
            _polish_param(param, ctx)
    for sub in getattr(command, "commands", {}).values():
        polish(sub)


class PolishedGroup(TyperGroup):
    """The root command group: polished once, before it parses anything (help, completion)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        polish(self)
        try:
            return super().main(*args, **kwargs)
        except SystemExit as e:
            if complete.Made.temporal_client:
                # A Temporal client can crash the interpreter at exit (as common.finish says):
                # the shell has its words, leave at once.
                sys.stdout.flush()
                os._exit(e.code if isinstance(e.code, int) else 0)
            raise
