"""One collect attempt: spawn the connector, send START, read and write until it is done, and
return what was observed as counts (CollectFacts). Records and cursors never leave this
package except into PostgreSQL.

The parts: the Reader (reader.py) feeds lines to the Messages (messages.py, misses.py,
interactions.py, pages.py, assistance.py), which fill batches the Writer (writer.py) flushes; the Tally
(facts.py) counts it all.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel

from activities.collect.admission import Admission
from activities.collect.assistance import Assistance
from activities.collect.facts import Tally
from activities.collect.interactions import Interactions
from activities.collect.messages import Messages
from activities.collect.pages import Pages
from activities.collect.reader import Deadlines, Reader
from activities.collect.start import Served, start_message
from activities.collect.stderr import StderrLog
from activities.collect.writer import Writer
from activities.environment import connector_env
from activities.process import STDERR_TAIL_LINES, ConnectorProcess, SandboxFailed
from activities.sandbox import Launch, Sandbox, unavailable
from pdpp_orch import policy, protocol
from pdpp_orch.manifest import ConfigError, Manifest
from pdpp_orch.models import CollectFacts, LiveProgress, Mode, RunInput, SandboxMode
from pdpp_orch.redaction import Redactor
from pdpp_orch.registry import SECRET_REF, ConnectorEntry
from pdpp_orch.store import Diagnostics, Store

log = logging.getLogger(__name__)

MAX_EXCLUDED = 50_000
CANCEL_GRACE_S = 60.0
# Live progress goes to the workflow as signals, and each costs four history events (the
# signal and the workflow task it wakes). After 2 s, then every 10 s, then a tenth of the time
# elapsed, at most every 5 min: a 20 s run adds 3 signals, an hour about 50, eight hours 130.
PROGRESS_FIRST_S = 2.0
PROGRESS_MIN_S = 10.0
PROGRESS_MAX_S = 300.0

Notify = Callable[[str, BaseModel], Awaitable[None]]


async def _no_one(name: str, arg: BaseModel) -> None:
    return None


class _Parties(NamedTuple):
    """The handlers of one conversation."""

    messages: Messages
    interactions: Interactions
    assistance: Assistance
    reader: Reader


class Collector:
    """One collect attempt of one run. Use `await Collector(...).run()`."""

    def __init__(
        self,
        store: Store,
        entry: ConnectorEntry,
        manifest: Manifest,
        run: RunInput,
        attempt: int,
        heartbeat: Callable[[dict[str, Any]], None],
        notify: Notify | None = None,
        cancel_requested: Callable[[], bool] = lambda: True,
        *,
        sandbox: Sandbox,
        secrets: Sequence[Path] = (),
        home: Path | None = None,
    ):
        self.store = store
        # The connector's sandbox, and the files it must not see (the registry's secrets).
        self.sandbox = sandbox
        self.secrets = list(secrets)
        self.entry = entry
        self.manifest = manifest
        self.run_input = run
        self.attempt = attempt
        self.heartbeat = heartbeat
        self.notify = notify or _no_one
        # Whether a CancelledError means someone cancelled the run (not a heartbeat timeout,
        # not the worker shutting down): only then is the attempt's outcome `cancelled`.
        self.cancel_requested = cancel_requested
        # The connector's persistent home (activities/environment.py); its working directory
        # when none is given.
        self.home = home
        wanted = [s.name for s in run.streams] or [s.name for s in manifest.streams]
        self.scope = {s: manifest.stream(s) for s in wanted}
        self.tally = Tally(manifest, self.scope, attempt)
        self.writer = Writer(store, entry.name, run.run_id, attempt, self.tally)
        max_run = min(run.max_run_seconds, entry.max_run_seconds or run.max_run_seconds)
        self.deadlines = Deadlines(max_run, entry.stall_timeout_seconds)

    async def run(self) -> CollectFacts:
        # Heartbeats from the first moment: an attempt that waits on PostgreSQL — for the row
        # locks of a vanished worker's transaction, until the server drops it (see
        # store.SERVER_TCP) — is alive, not lost. Begun later, such a wait timed the attempt
        # out again and again, until the run's retries were spent (tests/hosts/).
        beat = asyncio.create_task(self._heartbeats())
        try:
            return await self._attempt()
        finally:
            beat.cancel()

    async def _attempt(self) -> CollectFacts:
        run, store = self.run_input, self.store
        await store.runs.begin_attempt(run.run_id, self.attempt)
        await store.assistance.close_run(run.run_id, "cancelled")  # left open by an attempt that died
        state, resume = await store.state.start_state(self.entry.name, run.run_id, list(self.scope))
        served = await self._served()
        walks = served.walks if served is not None else run.mode is Mode.FORWARD
        excluded: dict[str, list[str]] = {}
        if walks:
            excluded = await store.gaps.open_item_subjects(self.entry.name, list(self.scope), MAX_EXCLUDED)
        self.tally.resume_only = not walks
        self.tally.restore(resume)
        self.writer.written = {
            s: (cp.proven_seq, cp.proven_bytes)
            for s, cp in self.tally.facts.checkpoints.items()
            if cp.proven_seq
        }
        first_page = served.first_page(protocol.PAGE_DEFAULT_BYTES) if served is not None else []
        workdir, scratch, made = self._workdir()
        try:
            env = connector_env(self.entry, self.home or workdir, run, self.manifest.connector_key)
            self.tally.redact = Redactor(env[k] for k, v in self.entry.env.items() if SECRET_REF.match(v))
            proc = ConnectorProcess(self.entry.command, env, workdir, await self._sandbox(workdir, env, made))
            self.stderr = StderrLog(store, run.run_id, self.attempt, proc, self.tally.redact)
            start = start_message(
                run, list(self.scope), state, excluded, served, self.entry.bindings, first_page
            )
            if first_page and run.lease_id is not None:
                await store.leases.mark_served(self.entry.name, run.lease_id, [g.gap_id for g in first_page])
            await self._converse(proc, served, start)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        facts = self.tally.finalize()
        await self._save(proc, facts)
        return facts

    async def _served(self) -> Served | None:
        """What a recovery run's lease serves it, and whether it walks its streams forward."""
        run, leases = self.run_input, self.store.leases
        if run.lease_id is None:
            return None
        kinds = await leases.leased_kinds(self.entry.name, run.lease_id)
        gaps = await leases.leased(self.entry.name, run.lease_id)
        return Served(gaps, walks=policy.walks_forward(run.mode, kinds))

    def _workdir(self) -> tuple[Path, Path | None, bool]:
        """The connector's working directory, the scratch one to remove afterwards, and
        whether we made it (then it is the connector's own)."""
        if self.entry.cwd is not None:
            made = not self.entry.cwd.exists()
            self.entry.cwd.mkdir(parents=True, exist_ok=True)
            return self.entry.cwd, None, made
        scratch = Path(tempfile.mkdtemp(prefix=f"pdpp-{self.entry.name}-"))
        return scratch, scratch, True

    async def _sandbox(self, workdir: Path, env: dict[str, str], made: bool) -> Launch | None:
        """The connector's sandbox (None: it runs without, as its operator chose)."""
        try:
            launch = await asyncio.to_thread(
                self.sandbox.prepare, self.entry, self.secrets, workdir, env, made
            )
        except OSError as e:
            raise unavailable(self.entry.name, f"{e.strerror or e}: {e.filename}") from e
        self.tally.facts.sandbox = launch.mode if launch is not None else SandboxMode.OFF
        return launch

    def _parties(self, proc: ConnectorProcess, served: Served | None) -> _Parties:
        """The handlers of one conversation, wired to each other: the Messages call the page,
        interaction and assistance handlers, which need the Messages' scope and misses."""
        writer, tally = self.writer, self.tally
        interactions: Interactions | None = None
        pages: Pages | None = None
        assistance: Assistance | None = None

        async def on_interaction(msg: dict[str, Any], problem: protocol.LineError | None) -> None:
            assert interactions is not None
            await (interactions.refuse(msg) if problem else interactions.request(msg))

        async def on_page(msg: dict[str, Any], item: bytes, problem: protocol.LineError | None) -> None:
            assert pages is not None
            await pages.request(msg, item, problem)

        async def on_assistance(msg: dict[str, Any], item: bytes) -> None:
            assert assistance is not None
            await assistance.handle(msg, item)

        messages = Messages(
            self.manifest,
            Admission.of(self.manifest, self.scope, self.run_input),
            tally,
            writer,
            served,
            on_interaction,
            proc.close_stdin,
            self.entry.reasons,
            on_page,
            on_assistance,
        )
        run_id, name = self.run_input.run_id, self.entry.name
        assistance = Assistance(
            self.store, run_id, name, self.attempt, writer, messages.in_scope, self.notify
        )
        pages = Pages(self.store, name, self.run_input.lease_id, served, proc, writer, messages.in_scope)
        interactions = Interactions(
            self.store, run_id, name, proc, tally, writer, messages.misses, self.deadlines, self.notify
        )
        reader = Reader(
            proc, self.entry.line_limit, messages, writer, tally, self.deadlines, interactions.waiting
        )
        return _Parties(messages, interactions, assistance, reader)

    async def _converse(self, proc: ConnectorProcess, served: Served | None, start: dict[str, Any]) -> None:
        """The whole conversation with the connector process, from START to its exit."""
        writer, tally = self.writer, self.tally
        messages, interactions, assistance, reader = self._parties(proc, served)
        flusher = asyncio.create_task(writer.flusher())
        reporter = asyncio.create_task(self._reporter())
        saver = asyncio.create_task(self.stderr.run())
        try:
            await self._start(proc)
            await proc.send(orjson.dumps(start))
            await reader.read_all()
            await interactions.end_waits()
            await reader.finish_process(messages.done_seen)
            await writer.drain(flusher)
            await assistance.end(tally.facts.done_status == "succeeded" and not tally.facts.runtime_error)
        except asyncio.CancelledError:
            # Cancelled by the operator, timed out, or the worker shutting down: end the
            # connector, keep every record it gave us, and leave the facts (and what it said)
            # where the workflow can find them — within CANCEL_GRACE_S, so that a database
            # that will not take the last batch cannot keep the attempt alive for ever.
            tally.facts.cancelled = self.cancel_requested()
            try:
                async with asyncio.timeout(CANCEL_GRACE_S):
                    await interactions.end_waits()
                    if proc.proc is not None:
                        await proc.terminate()
                    await writer.drain(flusher)
                    await assistance.end(False)
                    await self._save(proc, tally.finalize())
            except TimeoutError:
                log.warning("run %s: cancelled, but its last batch was not written in %.0f s",
                            self.run_input.run_id, CANCEL_GRACE_S)  # fmt: skip
            raise
        finally:
            reporter.cancel()
            saver.cancel()
            if proc.proc is not None and proc.proc.returncode is None:
                await proc.terminate()
            proc.close_stdout()
            if not flusher.done():
                flusher.cancel()
        await proc.finish_stderr()
        self._end_checks(served, messages.done_seen)

    async def _start(self, proc: ConnectorProcess) -> None:
        """Spawn the connector; one that cannot be started is a configuration error, at once."""
        command = self.entry.command[0]
        try:
            await proc.start()
        except OSError as e:
            raise ConfigError(
                f"connector {self.entry.name!r} cannot be started: {e.strerror or e} ({command})"
            ) from e
        except SandboxFailed as e:
            stage, _, what = str(e).partition(": ")
            if stage != "exec":
                raise unavailable(self.entry.name, what) from e
            why = what.rpartition(": ")[2]
            raise ConfigError(f"connector {self.entry.name!r} cannot be started: {why} ({command})") from e

    async def _save(self, proc: ConnectorProcess, facts: CollectFacts) -> None:
        """Leave the facts, and what the connector said, where the workflow can find them."""
        await self.stderr.save()
        tail = [
            self.tally.redact(line.replace("\x00", "\ufffd"))
            for line in list(proc.stderr_tail)[-STDERR_TAIL_LINES:]
        ]
        said = Diagnostics(connector_error=self.tally.connector_error, stderr_tail=tail)
        await self.store.runs.save_facts(self.run_input.run_id, facts.model_dump_json(), said)

    def _end_checks(self, served: Served | None, done_seen: bool) -> None:
        violate = self.writer.violate
        if served is not None and served.unreported and done_seen:
            # A connector served gaps must say what became of each; silence is not a clean run.
            violate(
                "served_gaps_unreported",
                f"{len(served.unreported)} served gap(s) got no DETAIL_GAP_RECOVERED, "
                "DETAIL_GAP_ATTEMPTED or DETAIL_GAP",
            )
        facts = self.tally.facts
        if facts.done_status is None or facts.runtime_error:
            return
        if (facts.done_status == "succeeded") != (facts.exit_code == 0):
            violate("exit_code_mismatch", f"DONE {facts.done_status} but exit code {facts.exit_code}")

    async def _heartbeats(self) -> None:
        interval = max(0.2, min(1.0, self.run_input.heartbeat_timeout_seconds / 4))
        while True:
            self.heartbeat(self.tally.progress())
            await asyncio.sleep(interval)

    async def _reporter(self) -> None:
        """Send live progress to the workflow when it changed (a signal: counts and stream
        names only), ever less often as the run gets longer."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        last: LiveProgress | None = None
        delay = PROGRESS_FIRST_S
        while True:
            # At once first: the run learns that an attempt has begun (a placed run stops
            # waiting for a worker of its queue), and which.
            live = self.tally.live()
            if live != last:
                await self.notify("report_progress", live)
                last = live
            await asyncio.sleep(delay)
            delay = min(PROGRESS_MAX_S, max(PROGRESS_MIN_S, (loop.time() - started) / 10))
