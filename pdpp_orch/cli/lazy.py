"""The root command group, whose commands are imported when named: `pdpp-orch records NAME`
imports the `records` module and what it uses, not Temporal's SDK, aiohttp and every other
command's (≈0.7 s on every start, completion included). `--help` and completion of the root
load every command (they show each one's help); a command's own help and completion, its module
only."""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any, ClassVar

import typer
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from pdpp_orch.cli.helptext import PolishedGroup, polish


class LazyGroup(PolishedGroup):
    """A group of `COMMANDS`: name → "module:attribute" under pdpp_orch.cli, where the
    attribute is a command function or a `typer.Typer` of subcommands. Each is made as typer
    makes the commands of its root (the same help, markup and completion), once, when first asked for."""

    COMMANDS: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: Any) -> list[str]:  # typer vendors click's Context
        return list(self.COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.COMMANDS:
            self.commands[cmd_name] = self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.COMMANDS:
            # typer's "Did you mean" draws on the commands made so far: make those it could name.
            for name in get_close_matches(args[0], self.COMMANDS):
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def _load(self, name: str) -> Any:
        module, attribute = self.COMMANDS[name].split(":")
        found = getattr(importlib.import_module(f"pdpp_orch.cli.{module}"), attribute)
        command: Any
        # As the root's Typer (cli/__init__.py) makes what it holds.
        if isinstance(found, typer.Typer):
            command = get_group_from_info(
                TyperInfo(found, name=name),
                pretty_exceptions_short=True,
                suggest_commands=True,
                rich_markup_mode="rich",
            )
        else:
            info = CommandInfo(name=name, callback=found)
            command = get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode="rich")
        polish(command)
        return command


def lazy_group(commands: dict[str, str]) -> type[LazyGroup]:
    """The root's group class, of these commands (typer takes a class, not an instance)."""
    return type("Root", (LazyGroup,), {"COMMANDS": commands})


def every_command(group: Any) -> dict[str, Any]:
    """`group`'s subcommands, all loaded: name → command (for walking the whole tree)."""
    ctx = typer.Context(group)
    listed = group.list_commands(ctx) if hasattr(group, "list_commands") else []
    return {name: group.get_command(ctx, name) for name in listed}
