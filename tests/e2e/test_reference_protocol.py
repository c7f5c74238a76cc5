"""The reference protocol as its own runtime speaks it (docs/pdpp-compatibility.md): START's
shape, gap pages, owner assistance, connector-owned skip reasons. Connectors here are scripted
to say each message as the reference's SDK says it."""

from __future__ import annotations

import json
from typing import Any

from pdpp_orch.models import Mode, RetryHint, RunOutcome, RunProgress, RunStatus, Trigger
from tests.conftest import CONNECTORS, Harness, history_text, until
from tests.helpers import cli, current_details
from workflows.connector_run import ConnectorRunWorkflow

DONE = {"done": "succeeded"}


async def test_start_is_shaped_as_the_reference_shapes_it(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {"msg": {"type": "STATE", "stream": "a", "cursor": None}},
            DONE,
        ]
    )
    first = await harness.run(name, ["a"])
    again = await harness.run(name, ["a"])
    assert first.status is RunStatus.SUCCEEDED and again.status is RunStatus.SUCCEEDED
    one, two = harness.starts(name)
    assert sorted(one) == ["bindings", "collection_mode", "detail_gaps", "run_id", "scope", "state", "type"]
    assert one["bindings"] == {"browser": {}, "filesystem": {}, "interactive": {}, "network": {}}
    assert (one["collection_mode"], one["state"], one["detail_gaps"]) == ("full_refresh", None, [])
    assert one["scope"] == {"streams": [{"name": "a"}]}
    # A stored checkpoint, even a null cursor, makes the next run incremental (the reference's rule).
    assert (two["collection_mode"], two["state"], two["detail_gaps"]) == ("incremental", {"a": None}, [])
    assert "recovery_only" not in two


async def test_start_bindings_are_those_the_entry_offers(harness: Harness) -> None:
    name = harness.scripted([DONE], bindings=["network"])
    await harness.run(name)
    [start] = harness.starts(name)
    assert start["bindings"] == {"network": {}}


def no_sources(**extra: Any) -> list[dict[str, Any]]:
    """The reference's ical connector with nothing to read: one SKIP_RESULT of its own reason."""
    skip = {
        "type": "SKIP_RESULT",
        "stream": "a",
        "reason": "no_calendar_sources",
        "message": "no .ics files in /home/x/.pdpp/imports/ical and no ICAL_SUBSCRIPTION_URL set",
        **extra,
    }
    return [{"msg": skip}, DONE]


async def test_a_connector_reason_mapped_informational_is_a_clean_run(harness: Harness) -> None:
    plain = harness.scripted(no_sources())
    o = await harness.run(plain, ["a"])
    # Without a mapping an unknown reason is a real miss: nothing collected, so failed.
    assert o.status is RunStatus.FAILED and o.reason == "records_skipped" and not o.needs_retry
    assert [(g.kind, g.recovery_class) for g in await harness.store.gaps.find(plain)] == [
        ("stream", "unknown")
    ]

    mapped = harness.scripted(no_sources(), reasons={"no_calendar_sources": "informational"})
    o = await harness.run(mapped, ["a"])
    assert o.status is RunStatus.SUCCEEDED and o.reason is None and not o.needs_retry
    assert o.skipped_by_reason == {"no_calendar_sources": 1} and o.gaps_opened == 0
    assert {s.stream: s.coverage for s in o.streams} == {"a": "complete"}
    assert await harness.store.gaps.find(mapped) == []


async def test_the_recovery_hint_wins_over_the_mapping(harness: Harness) -> None:
    name = harness.scripted(
        no_sources(recovery_hint={"action": "retry_by_runtime"}),
        reasons={"no_calendar_sources": "informational"},
    )
    o = await harness.run(name, ["a"], recover=False)
    assert o.status is RunStatus.FAILED and o.needs_retry
    [gap] = await harness.store.gaps.find(name)
    assert gap.recovery_class == "transient"

    retried = harness.scripted(no_sources(), reasons={"no_calendar_sources": "transient"})
    o = await harness.run(retried, ["a"], recover=False)
    assert o.needs_retry and [h.recovery_class for h in o.retry_hints] == ["transient"]


# -- gap pages ------------------------------------------------------------------------------


def detail_gaps(n: int) -> list[dict[str, Any]]:
    """A forward run that could not hydrate `n` items of stream a: n DETAIL_GAPs."""
    return [
        {
            "msg": {
                "type": "DETAIL_GAP",
                "stream": "a",
                "record_key": f"g-{i:05d}",
                "reason": "rate_limited",
                "detail_locator": {"item": i},
            }
        }
        for i in range(n)
    ]


class Paged:
    """A connector whose forward run leaves gaps and whose recovery runs play `recovery`."""

    def __init__(self, h: Harness, gaps: int, recovery: list[dict[str, Any]]):
        self.h = h
        self.log = h.tmp / "pages.jsonl"
        plan = h.tmp / "recovery.plan.json"
        plan.write_text(json.dumps(recovery))
        env = {"SCRIPT_RECOVERY_PLAN": str(plan), "SCRIPT_RESPONSE_LOG": str(self.log)}
        self.name = h.scripted([*detail_gaps(gaps), DONE], env=env)
        self.gaps = gaps

    async def forward(self) -> RetryHint:
        o = await self.h.run(self.name, ["a"], recover=False)
        assert o.needs_retry and o.gaps_opened == self.gaps
        [hint] = o.retry_hints
        return hint

    async def recovery(self, hint: RetryHint, lease: str, limit: int) -> RunOutcome:
        leased = await self.h.store.leases.lease(self.name, hint.hint_id, lease, limit, 8, 3600)
        assert leased == min(limit, self.gaps)
        return await self.h.run(
            self.name,
            ["a"],
            mode=Mode.RECOVERY,
            trigger=Trigger.RECOVERY,
            hint_id=hint.hint_id,
            lease_id=lease,
        )

    def pages(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []

    async def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in await self.h.store.gaps.find(self.name):
            out[g.status] = out.get(g.status, 0) + 1
        return out


async def test_a_recovery_is_served_its_lease_in_pages_each_gap_once(harness: Harness) -> None:
    paged = Paged(harness, 1_200, [{"drain": {"max_bytes": 20_000}}, DONE])
    hint = await paged.forward()
    o = await paged.recovery(hint, "lease-1", 1_200)
    assert o.status is RunStatus.SUCCEEDED and o.gaps_recovered == 1_200 and o.records_durable == 1_200
    [start] = harness.starts(paged.name)[1:]
    # START carries the first page (at most 500 entries, within 256 KiB), the rest comes by pages.
    assert start["recovery_only"] is True and len(start["detail_gaps"]) == 500
    entry = start["detail_gaps"][0]
    assert sorted(entry) == [
        "detail_locator",
        "gap_id",
        "lease_id",
        "record_key",
        "reference_only",
        "status",
        "stream",
    ]
    assert (entry["status"], entry["reference_only"], entry["lease_id"]) == ("pending", True, "lease-1")
    pages = paged.pages()
    assert pages[-1]["detail_gaps"] == [] and all(p["reference_only"] is True for p in pages)
    sizes = [len(json.dumps(p["detail_gaps"], separators=(",", ":"))) for p in pages[:-1]]
    assert all(16_000 < n <= 20_000 for n in sizes[:-1]) and sizes[-1] <= 20_000, sizes
    served = [g["gap_id"] for g in start["detail_gaps"]] + [
        g["gap_id"] for p in pages for g in p["detail_gaps"]
    ]
    assert len(served) == len(set(served)) == 1_200  # every gap once, none twice
    assert await paged.by_status() == {"recovered": 1_200}


async def test_pages_never_serve_beyond_the_lease(harness: Harness) -> None:
    paged = Paged(harness, 900, [{"drain": {}}, DONE])
    hint = await paged.forward()
    o = await paged.recovery(hint, "lease-1", 600)  # the budget granted 600
    assert o.status is RunStatus.SUCCEEDED and o.gaps_recovered == 600
    [start] = harness.starts(paged.name)[1:]
    [page, empty] = paged.pages()
    assert (len(start["detail_gaps"]), len(page["detail_gaps"]), empty["detail_gaps"]) == (500, 100, [])
    assert await paged.by_status() == {"recovered": 600, "pending": 300}


async def test_a_gap_leased_but_never_served_goes_back_untried(harness: Harness) -> None:
    # The connector drains START's page and stops without asking for more.
    paged = Paged(harness, 800, [{"drain": {"max_pages": 0}}, DONE])
    hint = await paged.forward()
    await paged.recovery(hint, "lease-1", 800)
    await harness.store.leases.settle_lease(
        paged.name, "lease-1", "r", run_clean=True, max_attempts=5, max_no_progress=8
    )
    gaps = await harness.store.gaps.find(paged.name)
    # The 500 served were tried once (and recovered); the 300 never served were not tried.
    assert sorted((g.status, g.attempts) for g in gaps) == [("pending", 0)] * 300 + [("recovered", 1)] * 500


async def test_a_redeferred_gap_is_not_served_again_in_the_same_run(harness: Harness) -> None:
    paged = Paged(harness, 600, [{"drain": {"redefer_every": 3}}, DONE])
    hint = await paged.forward()
    o = await paged.recovery(hint, "lease-1", 600)
    served = [g for p in paged.pages() for g in p["detail_gaps"]] + harness.starts(paged.name)[1][
        "detail_gaps"
    ]
    assert len(served) == len({g["gap_id"] for g in served}) == 600
    assert o.gaps_recovered == 400 and o.skipped_by_reason == {"rate_limited": 200}
    await harness.store.leases.settle_lease(
        paged.name, "lease-1", o.run_id, run_clean=False, max_attempts=5, max_no_progress=8
    )
    assert await paged.by_status() == {"recovered": 400, "pending": 200}


async def test_page_requests_are_checked_as_the_reference_checks_them(harness: Harness) -> None:
    log = harness.tmp / "responses.jsonl"
    name = harness.scripted(
        [
            {"page": {"request_id": "p1"}},  # a forward run holds no lease: nothing to serve
            {"page": {"request_id": "p2", "max_bytes": -1}},
            {"page": {"request_id": "p3", "reference_only": False}},
            {"page": {"request_id": "p4", "streams": ["b"]}},  # b is not in scope
            {"page": {"request_id": "p5", "streams": ["a", "a"], "max_bytes": 1000}},
            {"records": {"stream": "a", "count": 1}},
            {"state": "a"},
            DONE,
        ],
        env={"SCRIPT_RESPONSE_LOG": str(log)},
    )
    o = await harness.run(name, ["a"])
    answers = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(a["type"], a["request_id"], a["detail_gaps"]) for a in answers] == [
        ("DETAIL_GAPS_PAGE_RESPONSE", f"p{i}", []) for i in range(1, 6)
    ]
    # Malformed ones are quarantined, the run goes on; checkpoints after them are not proven.
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    kinds = [q.kind for q in await harness.store.runs.quarantined(o.run_id)]
    assert kinds == ["schema_invalid", "schema_invalid", "out_of_scope_stream"]


async def test_a_page_request_without_an_id_cannot_be_answered(harness: Harness) -> None:
    log = harness.tmp / "responses.jsonl"
    name = harness.scripted([{"page": {}}, DONE], env={"SCRIPT_RESPONSE_LOG": str(log)})
    o = await harness.run(name, ["a"])
    # stdin is closed instead, as the reference SDK's wait then ends (exit 0, no DONE).
    assert o.status is RunStatus.FAILED and o.reason == "connector_protocol_violation"
    assert not log.exists()


# -- owner assistance -----------------------------------------------------------------------

NOTICE = "Approve the sign-in on your phone ending 0100"


def assist(**fields: Any) -> dict[str, Any]:
    """ASSISTANCE as the reference SDK's ctx.assist() writes it."""
    msg = {
        "type": "ASSISTANCE",
        "message": NOTICE,
        "owner_action": "act_elsewhere",
        "progress_posture": "running",
        "response_contract": "none",
        "sensitivity": "non_secret",
        "timeout_seconds": 600,
        "assistance_request_id": "asst_1796236638013_1",
        **fields,
    }
    return {"msg": {k: v for k, v in msg.items() if v is not None}}


def assist_status(status: str = "resolved", aid: str = "asst_1796236638013_1") -> dict[str, Any]:
    return {
        "msg": {
            "type": "ASSISTANCE_STATUS",
            "assistance_request_id": aid,
            "status": status,
            "message": "done",
        }
    }


async def assistance_rows(h: Harness, run_id: str) -> list[dict[str, Any]]:
    rows = await h.store.pool.fetch(
        "SELECT assistance_id, status, message, owner_action, detail::text AS detail FROM assistance "
        "WHERE run_id = $1 ORDER BY created_at",
        run_id,
    )
    return [dict(r) for r in rows]


async def test_assistance_never_blocks_and_its_message_stays_in_postgres(
    harness: Harness, pg_url: str
) -> None:
    go = harness.tmp / "go"
    name = harness.scripted(
        [
            assist(
                attachments=[
                    {"kind": "browser_surface", "role": "streaming_companion", "ref": "https://x/t?k=1"}
                ]
            ),
            {"records": {"stream": "a", "count": 3}},
            {"state": "a"},
            {"wait_for": str(go)},
            assist_status(),
            {"records": {"stream": "a", "count": 2}},
            {"state": "a"},
            DONE,
        ]
    )
    async with harness.worker():
        inp = harness.run_input(name, ["a"])
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )

        async def asked() -> RunProgress | None:
            p = await handle.query("progress", result_type=RunProgress)
            return p if p.assistance else None

        p = await until(asked, "the run to show its owner assistance")
        [notice] = p.assistance
        assert (notice.assistance_id, notice.owner_action, notice.progress_posture) == (
            "asst_1796236638013_1",
            "act_elsewhere",
            "running",
        )
        assert not p.waiting  # nothing waits: the connector went on collecting
        [row] = await assistance_rows(harness, inp.run_id)
        assert (row["status"], row["message"]) == ("open", NOTICE)
        # What is kept of an attachment: no URL (it may carry authority).
        assert json.loads(row["detail"])["attachments"] == [
            {"kind": "browser_surface", "role": "streaming_companion"}
        ]

        # What the owner is asked shows where waiting interactions show: the run's current
        # details in the web UI (no message there), `pdpp-orch runs` (with it), the report.
        async def shown() -> str | None:
            text = await current_details(harness, handle.id)
            return text if "asks you to" in text else None

        details = await until(shown, "the web UI's details to show the assistance")
        assert "act elsewhere" in details and "running" in details and NOTICE not in details
        code, out, _ = await cli(harness, pg_url, "runs", "--json")
        assert code == 0
        [listed] = [r for r in json.loads(out) if r["run_id"] == handle.id]
        assert [
            (a["assistance_request_id"], a["owner_action"], a["message"]) for a in listed["assistance"]
        ] == [("asst_1796236638013_1", "act_elsewhere", NOTICE)]
        code, out, _ = await cli(harness, pg_url, "runs")
        assert code == 0 and "asks you to act elsewhere" in out
        page = harness.tmp / "report.html"
        code, out, _ = await cli(harness, pg_url, "report", name, "--json", "--html", str(page))
        assert code == 0
        [report] = json.loads(out)
        assert report["waiting_on_owner"] == 1 and [n["owner_action"] for n in report["notices"]] == [
            "act_elsewhere"
        ]
        assert "asks you to act elsewhere" in page.read_text() and NOTICE not in page.read_text()
        go.touch()
        o = await handle.result()
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 5 and o.gaps_opened == 0
    [row] = await assistance_rows(harness, o.run_id)
    assert row["status"] == "resolved"
    history = history_text(await harness.client.get_workflow_handle(o.run_id).fetch_history())
    assert "asst_1796236638013_1" in history and NOTICE not in history and "your phone" not in history


async def test_open_assistance_ends_with_the_run(harness: Harness) -> None:
    ok = harness.scripted([assist(), assist(assistance_request_id=None, owner_action="none"), DONE])
    o = await harness.run(ok, ["a"])
    rows = await assistance_rows(harness, o.run_id)
    assert o.status is RunStatus.SUCCEEDED
    assert [r["status"] for r in rows] == ["resolved", "resolved"]
    assert rows[1]["assistance_id"].startswith("asst_")  # assigned by the runtime, as the reference does
    failed = harness.scripted([assist(), {"done": "failed", "error": {"message": "login failed"}}])
    o = await harness.run(failed, ["a"])
    assert [r["status"] for r in await assistance_rows(harness, o.run_id)] == ["cancelled"]


async def test_assistance_is_checked_as_the_reference_checks_it(harness: Harness) -> None:
    name = harness.scripted(
        [
            assist(response_contract="response_required"),
            assist(owner_action="call_us"),
            assist(progress_posture=None),
            assist(message=" "),
            assist(attachments=[{"kind": "hologram"}]),
            assist(timeout_seconds=0),
            assist(stream="b"),
            assist(),
            assist(),  # the same id while it is still open
            assist_status("done"),
            assist_status(aid="asst_unknown"),
            assist_status(),
            {"records": {"stream": "a", "count": 1}},
            DONE,
        ]
    )
    o = await harness.run(name, ["a"])
    # Each bad line is quarantined and the run goes on (the reference would fail the run).
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    assert o.records_durable == 1
    quarantined = [(q.kind, q.detail) for q in await harness.store.runs.quarantined(o.run_id)]
    details = [d for _, d in quarantined]
    assert len(quarantined) == 10
    assert "response_contract must be none" in details[0] and "owner_action must be one of" in details[1]
    assert "progress_posture is required" in details[2] and "message must not be empty" in details[3]
    assert "attachments[0].kind" in details[4] and "timeout_seconds" in details[5]
    assert quarantined[6][0] == "out_of_scope_stream" and "duplicate" in details[7]
    assert "status must be one of" in details[8] and "not open" in details[9]
    [row] = await assistance_rows(harness, o.run_id)
    assert row["status"] == "resolved"


# -- checkpoints of a list+detail lane without a declared parent -----------------------------


async def test_a_lane_without_a_parent_needs_no_coverage_report_but_one_sent_must_add_up(
    harness: Harness,
) -> None:
    manifest = CONNECTORS / "lane.json"
    # As in the reference: no DETAIL_COVERAGE, nothing to account for; the checkpoint commits.
    plain = harness.scripted(
        [{"records": {"stream": "a", "count": 3}}, {"state": "a"}, DONE], manifest=manifest
    )
    o = await harness.run(plain)
    assert o.status is RunStatus.SUCCEEDED and o.state_streams_committed == 1
    coverage = {"type": "DETAIL_COVERAGE", "stream": "a", "state_stream": "a", "reference_only": True}
    short = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {"msg": {**coverage, "required_keys": ["1", "2", "3", "4"], "hydrated_keys": ["1", "2", "3"]}},
            {"state": "a"},
            DONE,
        ],
        manifest=manifest,
    )
    o = await harness.run(short)
    assert o.state_streams_committed == 0
    assert {s.stream: s.checkpoint for s in o.streams}["a"] == "coverage_unaccounted"


async def test_a_numeric_record_key_and_the_resources_spelling_are_the_reference_s(harness: Harness) -> None:
    name = harness.scripted(
        [
            {
                "msg": {
                    "type": "DETAIL_GAP",
                    "stream": "a",
                    "record_key": 42,
                    "reason": "rate_limited",
                    "detail_locator": {"n": 42},
                }
            },
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "a",
                    "reason": "upstream_server_error",
                    "resources": ["r1"],
                    "recovery_hint": "retry_by_runtime",
                }
            },
            DONE,
        ]
    )
    o = await harness.run(name, ["a"], recover=False)
    assert o.reason == "records_skipped"  # no violation
    assert sorted(g.subject for g in await harness.store.gaps.find(name)) == ["42", "r1"]


async def test_optional_skip_keys_account_for_themselves_and_a_state_may_omit_its_cursor(
    harness: Harness,
) -> None:
    manifest = CONNECTORS / "lane.json"
    coverage = {"type": "DETAIL_COVERAGE", "stream": "a", "state_stream": "a", "reference_only": True}
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {
                "msg": {
                    **coverage,
                    "required_keys": [1, 2, 3],
                    "hydrated_keys": [1, 2],
                    "optional_skip_keys": [3],
                }
            },
            {"msg": {"type": "STATE", "stream": "a"}},
            DONE,
        ],
        manifest=manifest,
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED and o.state_streams_committed == 1
