"""`respond`: answer a run's INTERACTION (credentials, OTP, manual action)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pdpp_orch.cli.common import DataDirOpt, endpoints, out, run_async, settings
from pdpp_orch.cli.complete import run_ids
from pdpp_orch.control import UsageError
from pdpp_orch.control import interactions as control
from pdpp_orch.control.connect import connect
from pdpp_orch.control.stack import command_store
from pdpp_orch.settings import Settings
from pdpp_orch.words import visible_line


def respond(
    run_id: Annotated[str, typer.Argument(help="The run waiting on its owner.", autocompletion=run_ids)],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The answer, a JSON object; `-` reads it from stdin and `@FILE` from a file, which "
            "keeps it out of your shell history.",
        ),
    ] = None,
    request: Annotated[
        str | None, typer.Option("--request", help="The request id, when the run waits on several.")
    ] = None,
    cancel_: Annotated[bool, typer.Option("--cancel", help="Decline: answer `cancelled`.")] = False,
    ttl: Annotated[
        float, typer.Option(help="Seconds the answer may wait in PostgreSQL for the run to read it.")
    ] = 600.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Answer a run's INTERACTION (credentials, OTP, manual action). The answer goes to the
    connector through PostgreSQL, read once and then erased; it never enters Temporal history
    and is never printed or logged. Without --data or --cancel, on a terminal, you are prompted
    for it without echo."""
    if cancel_ and data is not None:
        raise typer.BadParameter("--data and --cancel exclude each other")
    run_async(_respond(settings(data_dir), run_id, data, request, cancel_, ttl))


def _answer_json(data: str | None, prompt: str | None) -> str:
    """The answer as JSON text, from the option, stdin, a file, or a hidden prompt."""
    if data is None:
        if not sys.stdin.isatty():
            raise UsageError("give the answer with --data (or --cancel to decline)")
        # getpass writes to the terminal itself, past the inert streams: the connector's prompt
        # is made visible here.
        data = getpass.getpass(f"{visible_line(prompt or 'answer')} (JSON object, not echoed): ")
    elif data == "-":
        data = sys.stdin.read()
    elif data.startswith("@"):
        try:
            data = Path(data[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {data[1:]}: {e.strerror}") from e
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        # Never echo the answer: it may be a password.
        raise UsageError(f"the answer is not valid JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(value, dict):
        raise UsageError('the answer must be a JSON object, e.g. {"code": "123456"}')
    return json.dumps(value)


async def _respond(
    s: Settings, run_id: str, data: str | None, request: str | None, cancel: bool, ttl: float
) -> int:
    address, database = endpoints(s)
    async with command_store(database) as store:
        answer = None if cancel else _answer_json(data, await control.prompt(store, run_id, request))
        client = await connect(address, s.temporal_namespace)
        accepted, delivered = await control.respond(store, client, run_id, request, answer, ttl)
    if delivered:
        out.print(f"{accepted.kind} answer delivered to the connector of {run_id}")
    else:
        out.print(
            f"{accepted.kind} answer stored for {run_id}; the run reads it within {ttl:.0f} s or it is erased"
        )
    return 0
