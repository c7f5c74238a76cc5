"""The bundled connectors as real processes against the real simulated upstream (small world).

No Temporal and no PostgreSQL: each test spawns `python -m pdpp_orch.connectors.NAME`, writes a
START line, reads stdout until DONE, closes stdin (the runtime's acknowledgement) and checks the
messages and the exit code. Expected sizes are read from the upstream's own API, and the
upstream's request counters show what each connector asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pdpp_orch.connectors.http import parse_retry_after
from pdpp_orch.upstream.process import UpstreamProcess

MAX_MODSEQ = 2**64 - 1
SPECIAL_CHANNEL = "C017NG64T24"
BANK_LAST_DAY = "2026-04-19"  # the small world's bank history ends the day before its anchor
BANK_END = "2026-04-20"  # ... so a half-open range through it ends at the anchor


@pytest.fixture(scope="module")
def upstream_process() -> Iterator[UpstreamProcess]:
    with UpstreamProcess(world="small") as up:
        yield up


@pytest.fixture
def upstream(upstream_process: UpstreamProcess) -> UpstreamProcess:
    """The shared upstream with no faults and zeroed counters."""
    upstream_process.set_plan({})
    upstream_process.reset()
    return upstream_process


@dataclass
class Run:
    messages: list[dict[str, Any]]
    invalid: list[tuple[int, bytes]]  # (line index, raw line) of lines that are not JSON
    lines: list[bytes]
    exit_code: int
    stderr: str

    def of(self, type_: str, stream: str | None = None) -> list[dict[str, Any]]:
        return [
            m for m in self.messages if m["type"] == type_ and (stream is None or m.get("stream") == stream)
        ]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.of("RECORD", stream)]

    @property
    def done(self) -> dict[str, Any]:
        assert self.messages and self.messages[-1]["type"] == "DONE", self.stderr[-2000:]
        return self.messages[-1]


def start_msg(*streams: str | dict[str, Any], state: Any = None, **extra: Any) -> dict[str, Any]:
    scope = [s if isinstance(s, dict) else {"name": s} for s in streams]
    return {
        "type": "START",
        "run_id": "test-run",
        "collection_mode": "incremental",
        "scope": {"streams": scope},
        "state": state,
        "bindings": {},
        **extra,
    }


def run_connector(name: str, start: dict[str, Any], url: str, env: dict[str, str] | None = None) -> Run:
    """Spawn the connector, send START, answer its page requests with an empty page, read until
    DONE, close stdin, wait for the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"pdpp_orch.connectors.{name}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PDPP_UPSTREAM_URL": url, **(env or {})},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    stderr_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()))  # type: ignore[union-attr]
    drain.start()
    try:
        proc.stdin.write(json.dumps(start).encode() + b"\n")
        proc.stdin.flush()
        messages: list[dict[str, Any]] = []
        invalid: list[tuple[int, bytes]] = []
        lines: list[bytes] = []
        for raw in proc.stdout:
            lines.append(raw)
            try:
                msg = json.loads(raw)  # the stdlib: integers beyond 64 bits stay exact
            except ValueError:
                invalid.append((len(lines) - 1, raw))
                continue
            messages.append(msg)
            if msg.get("type") == "DETAIL_GAPS_PAGE_REQUEST":
                # The runtime's side: START served every gap, so the next page is empty.
                page = {"type": "DETAIL_GAPS_PAGE_RESPONSE", "reference_only": True, "detail_gaps": []}
                proc.stdin.write(json.dumps({**page, "request_id": msg["request_id"]}).encode() + b"\n")
                proc.stdin.flush()
            if msg.get("type") == "DONE":
                break
        proc.stdin.close()
        lines += proc.stdout.read().splitlines(keepends=True)  # nothing may follow DONE
        code = proc.wait(30)
    finally:
        watchdog.cancel()
        drain.join()
    return Run(messages, invalid, lines, code, b"".join(stderr_chunks).decode(errors="replace"))


def api(up: UpstreamProcess, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    with urllib.request.urlopen(f"{up.url}{path}?{query}", timeout=30) as resp:
        body = resp.read()
    return body.decode() if path.endswith(".csv") else json.loads(body)


def history_requests(up: UpstreamProcess) -> dict[str, int]:
    return dict(up.counters("slack.history", ids=True)["ids"])


# --- gmail ---------------------------------------------------------------------------------------

GMAIL = "/gmail/v1/users/me"


def test_gmail_full_sync_writes_the_exact_2_64_modseq_and_a_state_per_page(upstream: UpstreamProcess) -> None:
    profile = api(upstream, f"{GMAIL}/profile")
    labels = api(upstream, f"{GMAIL}/labels")["labels"]
    run = run_connector(
        "gmail", start_msg("labels", "threads", "messages"), upstream.url, {"GMAIL_PAGE_SIZE": "64"}
    )
    assert run.exit_code == 0 and not run.invalid
    assert len(run.lines) == len(run.messages)  # nothing after DONE
    assert len(run.records("labels")) == len(labels)
    assert len(run.records("threads")) == profile["threadsTotal"]
    messages = run.records("messages")
    assert len(messages) == profile["messagesTotal"] == len({m["id"] for m in messages})
    assert run.done == {
        "type": "DONE",
        "status": "succeeded",
        "records_emitted": len(labels) + profile["threadsTotal"] + profile["messagesTotal"],
    }
    states = [m["cursor"] for m in run.of("STATE", "messages")]
    pages = -(-profile["messagesTotal"] // 64)
    assert len(states) == pages  # one per page but the last, then the final one
    assert [s["highest_modseq"] for s in states[:-1]] == sorted(s["highest_modseq"] for s in states[:-1])
    assert states[-1] == {"highest_modseq": MAX_MODSEQ, "history_id": profile["historyId"]}
    assert b'"highest_modseq":18446744073709551615,' in run.lines[-2]
    # A STATE vouches only for the records before it.
    first_state = next(
        i for i, m in enumerate(run.messages) if m["type"] == "STATE" and m["stream"] == "messages"
    )
    before = [m for m in run.messages[:first_state] if m["type"] == "RECORD" and m["stream"] == "messages"]
    assert max(m["data"]["modseq"] for m in before) == states[0]["highest_modseq"]


def test_gmail_incremental_reads_only_messages_after_the_cursor(upstream: UpstreamProcess) -> None:
    page = api(upstream, f"{GMAIL}/messages", limit=1000)["messages"]
    mid = page[len(page) // 2]["modseq"]
    state = {"messages": {"highest_modseq": mid, "history_id": "1"}}
    run = run_connector("gmail", start_msg("messages", state=state), upstream.url)
    assert run.exit_code == 0
    got = run.records("messages")
    assert [m["id"] for m in got] == [m["id"] for m in page if m["modseq"] > mid]
    assert run.of("RECORD", "labels") == [] and run.of("STATE", "threads") == []  # scope is respected


def test_gmail_upstream_failure_is_a_retryable_failed_run(upstream: UpstreamProcess) -> None:
    upstream.set_plan({"faults": [{"route": "gmail.messages", "status": 503}]})
    run = run_connector("gmail", start_msg("labels", "messages"), upstream.url)
    assert run.exit_code == 1 and run.done["status"] == "failed" and run.done["error"]["retryable"]
    assert len(run.records("labels")) == 5 and run.of("STATE", "messages") == []
    assert upstream.count("gmail.messages") == 3


def test_gmail_bigint_quirk_breaks_only_the_final_state(upstream: UpstreamProcess) -> None:
    upstream.set_plan({"quirks": {"gmail_bigint_state": True}})
    profile = api(upstream, f"{GMAIL}/profile")
    assert "bigint_state" in profile["quirks"]
    run = run_connector(
        "gmail", start_msg("labels", "threads", "messages"), upstream.url, {"GMAIL_PAGE_SIZE": "64"}
    )
    assert run.exit_code == 0
    assert len(run.invalid) == 1
    index, line = run.invalid[0]
    assert index == len(run.lines) - 2  # the final STATE, right before DONE
    assert line == (
        b'{"type":"STATE","stream":"messages","cursor":{"highest_modseq":18446744073709551615n,'
        b'"history_id":"' + profile["historyId"].encode() + b'"}}\n'
    )
    assert len(run.messages) == len(run.lines) - 1  # every other line is valid JSON
    assert len(run.of("STATE", "messages")) == -(-profile["messagesTotal"] // 64) - 1
    assert run.done["status"] == "succeeded"
    assert run.done["records_emitted"] == len(run.of("RECORD")) == 5 + 60 + 200


# --- slack ---------------------------------------------------------------------------------------

SLACK = "/slack/api"


def slack_world(up: UpstreamProcess) -> tuple[int, dict[str, int]]:
    """(users, {channel: messages}) as the API reports them."""
    users = len(api(up, f"{SLACK}/users.list", limit=1000)["members"])
    channels = [c["id"] for c in api(up, f"{SLACK}/conversations.list", limit=1000)["channels"]]
    counts = {}
    for ch in channels:
        n, cursor = 0, None
        while True:
            page = api(up, f"{SLACK}/conversations.history", channel=ch, limit=1000, cursor=cursor)
            n += len(page["messages"])
            cursor = page["response_metadata"]["next_cursor"]
            if not cursor:
                break
        counts[ch] = n
    return users, counts


def per_channel(run: Run) -> Counter[str]:
    return Counter(m["channel"] for m in run.records("messages"))


def test_slack_failing_channel_is_skipped_the_rest_is_emitted_and_the_archive_is_reused(
    upstream: UpstreamProcess, tmp_path: Path
) -> None:
    users, counts = slack_world(upstream)
    upstream.set_plan({"faults": [{"route": "slack.history", "ids": [SPECIAL_CHANNEL], "status": 500}]})
    upstream.reset()
    env = {"SLACK_ARCHIVE": str(tmp_path / "archive.sqlite")}

    first = run_connector("slack", start_msg("users", "channels", "messages"), upstream.url, env)
    assert first.exit_code == 1 and not first.invalid
    assert first.done["status"] == "failed"
    assert first.done["error"]["code"] == "stream_collection_failed"
    assert first.done["error"]["retryable"] is True
    assert first.done["records_emitted"] == len(first.of("RECORD"))
    [skip] = first.of("SKIP_RESULT")
    assert skip["stream"] == "messages" and skip["resource_ids"] == [SPECIAL_CHANNEL]
    assert skip["reason"] == "upstream_server_error" and skip["recovery_hint"] == "retry_by_runtime"
    assert skip["retry_after_seconds"] == 600
    assert skip["diagnostics"] == {"status": 500, "attempts": 3}
    assert len(first.records("users")) == users and len(first.records("channels")) == len(counts)
    others = {ch: n for ch, n in counts.items() if ch != SPECIAL_CHANNEL}
    assert per_channel(first) == others
    for m in first.of("RECORD", "messages"):
        assert m["key"] == [m["data"]["channel"], m["data"]["ts"]]
    assert history_requests(upstream)[SPECIAL_CHANNEL] == 3
    [state] = first.of("STATE", "messages")
    assert set(state["cursor"]["channels"]) == set(others)

    # The runtime's follow-up: the same workspace minus the failed channel, from the archive.
    upstream.reset()
    scope = {"name": "messages", "exclude_resources": [SPECIAL_CHANNEL]}
    second = run_connector("slack", start_msg("users", "channels", scope), upstream.url, env)
    assert second.exit_code == 0 and second.done["status"] == "succeeded"
    assert second.of("SKIP_RESULT") == []
    assert per_channel(second) == others
    # Only a refresh: one history request per channel (nothing new since `oldest`), none excluded.
    assert history_requests(upstream) == dict.fromkeys(others, 1)


def test_slack_resources_selects_channels_and_the_cursor_limits_emission(
    upstream: UpstreamProcess, tmp_path: Path
) -> None:
    env = {"SLACK_ARCHIVE": str(tmp_path / "archive.sqlite"), "SLACK_RETRY_DELAY_SECONDS": "30"}
    _, counts = slack_world(upstream)
    upstream.reset()
    picked = sorted(counts)[:2]
    run = run_connector("slack", start_msg({"name": "messages", "resources": picked}), upstream.url, env)
    assert run.exit_code == 0 and set(history_requests(upstream)) == set(picked)
    assert per_channel(run) == {ch: counts[ch] for ch in picked}
    assert run.of("RECORD", "users") == []
    cursor = run.of("STATE", "messages")[-1]["cursor"]

    again = run_connector(
        "slack",
        start_msg({"name": "messages", "resources": picked}, state={"messages": cursor}),
        upstream.url,
        env,
    )
    assert again.exit_code == 0 and again.records("messages") == []
    assert again.of("STATE", "messages")[-1]["cursor"] == cursor


# --- usaa ----------------------------------------------------------------------------------------


def usaa_start(since: str, until: str = BANK_END) -> dict[str, Any]:
    return start_msg({"name": "transactions", "time_range": {"since": since, "until": until}})


def test_usaa_ladder_ends_at_90_days_and_reports_exactly_the_rest(upstream: UpstreamProcess) -> None:
    upstream.set_plan({"limits": {"bank_max_range_days": 100}})
    until = date.fromisoformat(BANK_END)
    since = until.replace(year=until.year - 5)
    # Half-open: an until at 12:00 on the last day lets that day's transactions (its midnight) in.
    run = run_connector("usaa", usaa_start(since.isoformat(), f"{BANK_LAST_DAY}T12:00:00Z"), upstream.url)
    assert run.exit_code == 0 and run.done["status"] == "succeeded" and not run.invalid
    assert upstream.count("bank.export") == 4  # one request per rung
    accepted_since = until - timedelta(days=90)
    expected = api(upstream, "/bank/export.csv", start=accepted_since.isoformat(), end=BANK_END)
    rows = expected.strip().split("\n")[1:]
    records = run.records("transactions")
    assert len(records) == len(rows) > 0
    assert {r["date"] for r in records} >= {accepted_since.isoformat(), BANK_LAST_DAY}
    assert all(accepted_since.isoformat() <= r["date"] < BANK_END for r in records)
    assert [r["amount"] for r in records] == [row.split(",")[3] for row in rows]  # strings, as exported
    [skip] = run.of("SKIP_RESULT")
    assert skip["reason"] == "range_truncated" and skip["recovery_hint"] == "retry_by_runtime"
    # Exactly the rest: it ends where the export began.
    assert skip["time_range"] == {"since": since.isoformat(), "until": accepted_since.isoformat()}
    requested = (until - since).days
    assert skip["diagnostics"] == {
        "requested_days": requested,
        "accepted_days": 90,
        "longest_accepted_days": 90,
        "ladder": [
            {"days": requested, "status": 400},
            {"days": 730, "status": 400},
            {"days": 365, "status": 400},
            {"days": 90, "status": 200},
        ],
        "max_range_days": 100,
    }
    assert run.of("STATE", "transactions")[-1]["cursor"] == {"until": BANK_END}


def test_usaa_whole_range_accepted_means_no_skip(upstream: UpstreamProcess) -> None:
    run = run_connector("usaa", usaa_start("2025-01-01"), upstream.url)
    assert run.exit_code == 0 and run.of("SKIP_RESULT") == []
    dates = {r["date"] for r in run.records("transactions")}
    assert min(dates) == "2025-01-01" and max(dates) == BANK_LAST_DAY


def test_usaa_goes_on_from_its_cursor_through_today(upstream: UpstreamProcess) -> None:
    # The cursor's until is exclusive (2026-04-10: read up to the 9th); the next run re-reads
    # that last day and goes on through today, its until tomorrow.
    state = {"transactions": {"until": "2026-04-10"}}
    run = run_connector(
        "usaa", start_msg("transactions", state=state), upstream.url, {"USAA_TODAY": BANK_LAST_DAY}
    )
    dates = {r["date"] for r in run.records("transactions")}
    assert (min(dates), max(dates)) == ("2026-04-09", BANK_LAST_DAY) and run.of("SKIP_RESULT") == []
    assert run.of("STATE", "transactions")[-1]["cursor"] == {"until": BANK_END}


def test_usaa_no_rung_accepted_fails_retryably(upstream: UpstreamProcess) -> None:
    upstream.set_plan({"limits": {"bank_max_range_days": 30}})
    run = run_connector("usaa", usaa_start("2021-01-01"), upstream.url)
    assert run.exit_code == 1 and run.of("RECORD") == [] and run.of("STATE") == []
    assert run.done["status"] == "failed" and run.done["error"]["retryable"] is True


# --- chatgpt -------------------------------------------------------------------------------------

CHATGPT_429 = {
    "faults": [
        {
            "route": "chatgpt.conversation",
            "sample": {"count": 40, "seed": 7},
            "status": 429,
            "retry_after": 86400,
        }
    ]
}


def listed_total(up: UpstreamProcess) -> int:
    return int(api(up, "/chatgpt/backend-api/conversations", limit=1)["total"])


def test_chatgpt_rate_limited_conversations_become_detail_gaps(upstream: UpstreamProcess) -> None:
    upstream.set_plan(CHATGPT_429)
    limited = set(upstream.fault_ids(0))
    total = listed_total(upstream)
    upstream.reset()
    run = run_connector("chatgpt", start_msg("conversations"), upstream.url)
    assert run.exit_code == 0 and run.done["status"] == "succeeded" and not run.invalid
    gaps = run.of("DETAIL_GAP")
    assert len(gaps) == len(limited) == 40
    assert {g["record_key"] for g in gaps} == limited
    for g in gaps:
        assert g["detail_locator"] == {"conversation_id": g["record_key"]}
        assert g["reason"] == "rate_limited" and g["retryable"] is True
        assert g["retry_after_seconds"] == 86400 and g["last_error"]["status"] == 429
    records = run.records("conversations")
    assert len(records) + len(gaps) == total
    assert all("mapping" in r for r in records) and not limited & {r["id"] for r in records}
    detail = upstream.counters()["routes"]["chatgpt.conversation"]
    assert detail["total"] == detail["distinct_ids"] == total and detail["max_per_id"] == 1
    [coverage] = run.of("DETAIL_COVERAGE")
    assert coverage == {
        "type": "DETAIL_COVERAGE",
        "reference_only": True,
        "stream": "conversations",
        "state_stream": "conversations",
        "required_keys": total,
        "hydrated_keys": total - 40,
        "gap_keys": 40,
    }
    order = [m["type"] for m in run.messages[-3:]]
    assert order == ["DETAIL_COVERAGE", "STATE", "DONE"]
    listed = api(upstream, "/chatgpt/backend-api/conversations", limit=100)["items"]
    assert run.of("STATE")[0]["cursor"] == {"update_time": max(c["update_time"] for c in listed)}


def test_chatgpt_skip_result_variant_names_the_same_conversations(upstream: UpstreamProcess) -> None:
    upstream.set_plan(CHATGPT_429)
    limited = set(upstream.fault_ids(0))
    run = run_connector(
        "chatgpt", start_msg("conversations"), upstream.url, {"CHATGPT_GAP_STYLE": "skip_result"}
    )
    assert run.exit_code == 0 and run.of("DETAIL_GAP") == []
    skips = run.of("SKIP_RESULT")
    assert {s["resource_ids"][0] for s in skips} == limited and len(skips) == 40
    assert all(s["reason"] == "rate_limited" and s["retry_after_seconds"] == 86400 for s in skips)
    assert all(s["recovery_hint"] == "retry_by_runtime" and len(s["resource_ids"]) == 1 for s in skips)
    assert run.of("DETAIL_COVERAGE")[0]["gap_keys"] == 40


def test_chatgpt_recovery_fetches_exactly_the_served_gaps_once(upstream: UpstreamProcess) -> None:
    upstream.set_plan(CHATGPT_429)
    limited = sorted(upstream.fault_ids(0))
    upstream.set_plan({})
    upstream.reset()
    served = [
        {
            "gap_id": f"g{i}",
            "lease_id": f"l{i}",
            "stream": "conversations",
            "record_key": cid,
            "detail_locator": {"conversation_id": cid},
            "status": "pending",
            "reference_only": True,
        }
        for i, cid in enumerate(limited)
    ]
    start = start_msg("conversations", recovery_only=True, detail_gaps=served)
    run = run_connector("chatgpt", start, upstream.url)
    assert run.exit_code == 0 and run.done["status"] == "succeeded"
    assert sorted(r["id"] for r in run.records("conversations")) == limited
    recovered = run.of("DETAIL_GAP_RECOVERED")
    assert {(m["gap_id"], m["record_key"], m["lease_id"]) for m in recovered} == {
        (g["gap_id"], g["record_key"], g["lease_id"]) for g in served
    }
    # Each RECORD comes before its DETAIL_GAP_RECOVERED.
    seen: set[str] = set()
    for m in run.messages:
        if m["type"] == "RECORD":
            seen.add(m["key"])
        elif m["type"] == "DETAIL_GAP_RECOVERED":
            assert m["record_key"] in seen
    assert run.of("STATE") == [] and run.of("DETAIL_GAP") == []
    counters = upstream.counters("chatgpt.conversation", ids=True)
    assert counters["ids"] == dict.fromkeys(limited, 1)
    assert counters["routes"]["chatgpt.list"]["total"] == 0  # no forward walk


def test_chatgpt_recovery_reports_still_limited_and_vanished_gaps(upstream: UpstreamProcess) -> None:
    upstream.set_plan(CHATGPT_429)
    limited = upstream.fault_ids(0)[:2]
    gone = "00000000-0000-4000-8000-000000000000"
    served = [
        {
            "gap_id": f"g-{cid}",
            "stream": "conversations",
            "record_key": cid,
            "detail_locator": {"conversation_id": cid},
        }
        for cid in [*limited, gone]
    ]
    run = run_connector(
        "chatgpt", start_msg("conversations", recovery_only=True, detail_gaps=served), upstream.url
    )
    assert run.exit_code == 0 and run.of("RECORD") == []
    gaps = {g["record_key"]: g for g in run.of("DETAIL_GAP")}
    assert set(gaps) == {*limited, gone}
    for cid in limited:
        assert gaps[cid]["retryable"] is True and gaps[cid]["retry_after_seconds"] == 86400
        assert gaps[cid]["gap_id"] == f"g-{cid}"
    assert gaps[gone]["retryable"] is False and gaps[gone]["reason"] == "not_found"
    assert run.of("DETAIL_GAP_ATTEMPTED") == [
        {"type": "DETAIL_GAP_ATTEMPTED", "gap_id": f"g-{gone}", "stream": "conversations"}
    ]


def test_chatgpt_short_retry_after_is_waited_out(upstream: UpstreamProcess) -> None:
    upstream.set_plan(
        {
            "faults": [
                {
                    "route": "chatgpt.conversation",
                    "sample": {"count": 5, "seed": 1},
                    "status": 429,
                    "retry_after": 0,
                    "times": 2,
                }
            ]
        }
    )
    flaky = upstream.fault_ids(0)
    run = run_connector("chatgpt", start_msg("conversations"), upstream.url)
    assert run.exit_code == 0 and run.of("DETAIL_GAP") == []
    assert len(run.records("conversations")) == listed_total(upstream)
    ids = upstream.counters("chatgpt.conversation", ids=True)["ids"]
    assert {cid: ids[cid] for cid in flaky} == dict.fromkeys(flaky, 3)


def test_chatgpt_incremental_fetches_only_updated_conversations(upstream: UpstreamProcess) -> None:
    items = []
    for offset in range(0, listed_total(upstream), 100):
        items += api(upstream, "/chatgpt/backend-api/conversations", offset=offset, limit=100)["items"]
    times = sorted(c["update_time"] for c in items)
    cut = times[len(times) * 3 // 4]
    upstream.reset()
    run = run_connector(
        "chatgpt", start_msg("conversations", state={"conversations": {"update_time": cut}}), upstream.url
    )
    newer = {c["id"] for c in items if c["update_time"] > cut}
    assert {r["id"] for r in run.records("conversations")} == newer
    assert upstream.count("chatgpt.conversation") == len(newer)
    assert run.of("DETAIL_COVERAGE")[0]["required_keys"] == len(newer)
    assert run.of("STATE")[0]["cursor"] == {"update_time": times[-1]}


def test_chatgpt_listing_failure_fails_the_stream_without_a_checkpoint(upstream: UpstreamProcess) -> None:
    upstream.set_plan({"faults": [{"route": "chatgpt.list", "status": 500}]})
    run = run_connector("chatgpt", start_msg("conversations"), upstream.url)
    assert run.exit_code == 1 and run.of("STATE") == [] and run.of("RECORD") == []
    assert run.done["error"]["code"] == "stream_collection_failed" and run.done["error"]["retryable"]
    [skip] = run.of("SKIP_RESULT")
    assert skip["stream"] == "conversations" and skip["reason"] == "upstream_server_error"
    assert upstream.count("chatgpt.list") == 4  # bounded retries


# --- shared --------------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert parse_retry_after("86400") == 86400 and isinstance(parse_retry_after("86400"), int)
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now


def test_recovery_only_without_detail_lanes_is_a_clean_no_op(upstream: UpstreamProcess) -> None:
    for name, stream in (("gmail", "messages"), ("usaa", "transactions")):
        run = run_connector(name, start_msg(stream, recovery_only=True, detail_gaps=[]), upstream.url)
        assert run.exit_code == 0 and run.messages == [
            {"type": "DONE", "status": "succeeded", "records_emitted": 0}
        ]
    assert all(r["total"] == 0 for r in upstream.counters()["routes"].values())
