"""The simulated upstreams: deterministic data, exact pagination, fault plans, counters, clock."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from pdpp_orch.upstream import UpstreamError, UpstreamProcess, load_plan, preset_plans

GMAIL = "/gmail/v1/users/me"
SLACK = "/slack/api"
CHATGPT = "/chatgpt/backend-api"
SPECIAL = "C017NG64T24"


class Reply:
    """Status, headers and body of one request, whatever the status."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        # stdlib json keeps integers exact, which is what the 2**64-1 checks need.
        return json.loads(self.body)


def get(up: UpstreamProcess, path: str, **params: Any) -> Reply:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = up.url + path + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, dict(e.headers), e.read())


def ok(up: UpstreamProcess, path: str, **params: Any) -> Any:
    reply = get(up, path, **params)
    assert reply.status == 200, reply.body
    return reply.json()


def all_gmail(up: UpstreamProcess, what: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = ok(up, f"{GMAIL}/{what}", cursor=cursor, **params)
        out += page[what]
        if (cursor := page["next_cursor"]) is None:
            return out


def all_slack(up: UpstreamProcess, method: str, key: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = ok(up, f"{SLACK}/{method}", cursor=cursor or None, **params)
        out += page[key]
        if not (cursor := page["response_metadata"]["next_cursor"]):
            return out


def all_conversations(up: UpstreamProcess) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = ok(up, f"{CHATGPT}/conversations", offset=len(out), limit=100)
        out += page["items"]
        if len(out) >= page["total"]:
            return out


@pytest.fixture(scope="module")
def server() -> Iterator[UpstreamProcess]:
    with UpstreamProcess(world="small") as up:
        yield up


@pytest.fixture
def up(server: UpstreamProcess) -> Iterator[UpstreamProcess]:
    """The shared small-world server with no faults and zeroed counters, left that way."""
    server.set_plan({})
    server.reset()
    yield server
    server.set_plan({})
    server.reset()


def test_same_seed_same_data_and_another_seed_differs(up: UpstreamProcess) -> None:
    pages = [f"{GMAIL}/messages", f"{SLACK}/conversations.list", f"{CHATGPT}/conversations"]
    first = [get(up, p).body for p in pages]
    assert [get(up, p).body for p in pages] == first  # the same server twice
    with UpstreamProcess(world="small") as again:
        assert [get(again, p).body for p in pages] == first  # a fresh process, same seed
    with UpstreamProcess(world={"preset": "small", "seed": 1}) as other:
        theirs = [c["id"] for c in ok(other, f"{CHATGPT}/conversations")["items"]]
    ours = [c["id"] for c in json.loads(first[2])["items"]]
    assert len(theirs) == len(ours) and not set(theirs) & set(ours)


def test_a_world_file_overrides_a_preset() -> None:
    with UpstreamProcess(world={"preset": "small", "chatgpt": {"conversations": 7}}) as scaled:
        assert ok(scaled, f"{CHATGPT}/conversations")["total"] == 7
        assert len(all_conversations(scaled)) == 7
        assert ok(scaled, f"{GMAIL}/profile")["messagesTotal"] == 200  # the rest stays small


def test_gmail_pagination_covers_the_mailbox_in_modseq_order(up: UpstreamProcess) -> None:
    messages = all_gmail(up, "messages", limit=37)
    assert len(messages) == 200 and len({m["id"] for m in messages}) == 200
    modseqs = [m["modseq"] for m in messages]
    assert modseqs == sorted(modseqs) and len(set(modseqs)) == 200
    assert modseqs[-1] == 2**64 - 1 and max(modseqs[:-1]) < 2**53
    threads = all_gmail(up, "threads", limit=7)
    assert len(threads) == 60
    in_threads = [mid for t in threads for mid in t["messageIds"]]
    assert sorted(in_threads) == sorted(m["id"] for m in messages)
    assert all(m["threadId"] in {t["id"] for t in threads} for m in messages)
    labels = ok(up, f"{GMAIL}/labels")["labels"]
    assert len(labels) == 5
    for label in labels:
        assert label["messagesTotal"] == sum(label["id"] in m["labelIds"] for m in messages)
    newer = all_gmail(up, "messages", since_modseq=modseqs[150], limit=20)
    assert [m["id"] for m in newer] == [m["id"] for m in messages[151:]]
    assert all_gmail(up, "messages", since_modseq=2**64 - 1) == []


def test_gmail_profile_highest_modseq_is_exact_and_quirks_follow_the_plan(up: UpstreamProcess) -> None:
    profile = ok(up, f"{GMAIL}/profile")
    assert profile["highestModseq"] == 18446744073709551615 == 2**64 - 1
    assert b'"highestModseq":18446744073709551615' in get(up, f"{GMAIL}/profile").body  # a number
    assert profile["quirks"] == []
    up.set_plan(load_plan("case-a"))
    assert ok(up, f"{GMAIL}/profile")["quirks"] == ["bigint_state"]


def test_slack_users_and_channels_paginate_to_the_world_counts(up: UpstreamProcess) -> None:
    users = all_slack(up, "users.list", "members", limit=7)
    assert len({u["id"] for u in users}) == 20
    channels = all_slack(up, "conversations.list", "channels", limit=7)
    ids = [c["id"] for c in channels]
    assert len(set(ids)) == 30 and SPECIAL in ids
    assert 0 < ids.index(SPECIAL) < 29  # in the middle, not first or last
    assert all(cid.startswith("C") and len(cid) == 11 and cid.isupper() for cid in ids)


def test_slack_history_sums_to_the_world_and_pages_newest_first(up: UpstreamProcess) -> None:
    channels = [c["id"] for c in all_slack(up, "conversations.list", "channels")]
    per_channel = {}
    for cid in channels:
        msgs = all_slack(up, "conversations.history", "messages", channel=cid)
        stamps = [float(m["ts"]) for m in msgs]
        assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
        per_channel[cid] = msgs
    assert len(per_channel[SPECIAL]) == 137
    assert sum(len(m) for c, m in per_channel.items() if c != SPECIAL) == 3000
    assert min(len(m) for m in per_channel.values()) >= 1
    biggest = max(per_channel, key=lambda c: len(per_channel[c]))
    assert (
        all_slack(up, "conversations.history", "messages", channel=biggest, limit=13) == per_channel[biggest]
    )
    fifth_newest = per_channel[biggest][4]["ts"]
    newer = all_slack(up, "conversations.history", "messages", channel=biggest, oldest=fifth_newest)
    assert newer == per_channel[biggest][:4]
    missing = get(up, f"{SLACK}/conversations.history", channel="C0NOSUCHONE")
    assert (missing.status, missing.json()) == (404, {"ok": False, "error": "channel_not_found"})
    assert get(up, f"{SLACK}/users.list", cursor="not-a-cursor").status == 400


def test_chatgpt_list_total_order_and_details(up: UpstreamProcess) -> None:
    items = all_conversations(up)
    assert len(items) == 300 and len({i["id"] for i in items}) == 300
    updates = [i["update_time"] for i in items]
    assert updates == sorted(updates, reverse=True)
    assert all(i["create_time"] <= i["update_time"] for i in items)
    detail = ok(up, f"{CHATGPT}/conversation/{items[0]['id']}")
    assert detail["id"] == items[0]["id"] and detail["title"] == items[0]["title"]
    with_message = [n for n in detail["mapping"].values() if n["message"] is not None]
    assert 2 <= len(with_message) <= 8
    assert detail["current_node"] in detail["mapping"]
    assert get(up, f"{CHATGPT}/conversation/00000000-0000-4000-8000-000000000000").status == 404


def test_bank_export_rejects_long_ranges_and_serves_90_days(up: UpstreamProcess) -> None:
    end = date(2026, 4, 20)  # exclusive: the history's last day is 2026-04-19
    up.set_plan(load_plan("case-d"))
    for days in (5 * 365, 2 * 365, 365, 101):
        r = get(up, "/bank/export.csv", start=end - timedelta(days=days), end=end)
        assert (r.status, r.json()) == (400, {"error": "range_too_long", "max_days": 100})
    assert get(up, "/bank/export.csv", start=end - timedelta(days=100), end=end).status == 200
    start = end - timedelta(days=90)
    r = get(up, "/bank/export.csv", start=start, end=end)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert list(rows[0]) == ["id", "date", "description", "amount", "balance", "category"]
    dates = [date.fromisoformat(row["date"]) for row in rows]
    assert dates == sorted(dates) and dates[0] == start and dates[-1] == end - timedelta(days=1)
    # Half-open: a range's end day is the next range's first, in neither twice.
    before = get(up, "/bank/export.csv", start=start - timedelta(days=1), end=start).body.decode()
    assert {row["date"] for row in csv.DictReader(io.StringIO(before))} == {str(start - timedelta(days=1))}
    assert 90 <= len(rows) <= 4 * 90 and len({row["id"] for row in rows}) == len(rows)
    assert get(up, "/bank/export.csv", start="2026-02-30", end="2026-03-01").json() == {
        "error": "bad_request",
        "detail": "start is not a date",
    }
    up.set_plan({})  # no limit: the full five years and thirty days
    full = get(up, "/bank/export.csv", start="2000-01-01", end="2030-01-01").body.decode()
    first_day = next(csv.DictReader(io.StringIO(full)))["date"]
    assert first_day == "2021-03-21"


def test_sampled_429s_carry_retry_after_and_hit_exactly_the_sample(up: UpstreamProcess) -> None:
    plan = {
        "faults": [
            {
                "route": "chatgpt.conversation",
                "sample": {"count": 30, "seed": 7},
                "status": 429,
                "retry_after": 86400,
            }
        ]
    }
    resolved = up.set_plan(plan)
    assert resolved["faults"][0]["resolved_count"] == 30
    targets = up.fault_ids(0)
    assert len(set(targets)) == 30
    limited = set()
    for item in all_conversations(up):
        r = get(up, f"{CHATGPT}/conversation/{item['id']}")
        if r.status == 429:
            assert r.headers["Retry-After"] == "86400"
            assert r.json() == {"error": "Too Many Requests", "status": 429, "retry_after": 86400}
            limited.add(item["id"])
        else:
            assert r.status == 200
    assert limited == set(targets)
    route = up.counters()["routes"]["chatgpt.conversation"]
    assert route["by_status"] == {"200": 270, "429": 30} and route["distinct_ids"] == 300
    up.set_plan(plan)
    assert up.fault_ids(0) == targets  # same seed, same sample
    plan["faults"][0]["sample"]["seed"] = 8  # type: ignore[index]
    up.set_plan(plan)
    assert set(up.fault_ids(0)) != set(targets)


def test_times_fires_that_many_times_per_id_then_succeeds(up: UpstreamProcess) -> None:
    channels = [c["id"] for c in all_slack(up, "conversations.list", "channels")]
    other = next(c for c in channels if c != SPECIAL)
    up.set_plan({"faults": [{"route": "slack.history", "ids": [SPECIAL, other], "status": 500, "times": 2}]})
    for cid in (SPECIAL, other):
        replies = [get(up, f"{SLACK}/conversations.history", channel=cid, limit=1) for _ in range(3)]
        assert [r.status for r in replies] == [500, 500, 200]
        assert replies[0].json() == {"ok": False, "error": "internal_error"}
    untouched = next(c for c in channels if c not in (SPECIAL, other))
    assert get(up, f"{SLACK}/conversations.history", channel=untouched).status == 200
    route = up.counters()["routes"]["slack.history"]
    assert route == {"total": 7, "by_status": {"200": 3, "500": 4}, "distinct_ids": 3, "max_per_id": 3}


def test_until_follows_the_server_clock(up: UpstreamProcess) -> None:
    now = up.clock()
    assert now.isoformat().startswith("2026-04-20T00:")  # starts at the world anchor
    until = now + timedelta(hours=1)
    up.set_plan({"faults": [{"route": "chatgpt.list", "status": 503, "until": until.isoformat()}]})
    assert get(up, f"{CHATGPT}/conversations").status == 503
    assert up.advance_clock(3600) >= until
    assert get(up, f"{CHATGPT}/conversations").status == 200
    up.set_clock(now)
    assert get(up, f"{CHATGPT}/conversations").status == 503


def test_counters_count_every_request_and_reset_zeroes_them(up: UpstreamProcess) -> None:
    ids = [i["id"] for i in ok(up, f"{CHATGPT}/conversations", limit=3)["items"]]
    for cid, n in zip(ids, (1, 2, 3), strict=True):
        for _ in range(n):
            ok(up, f"{CHATGPT}/conversation/{cid}")
    get(up, f"{CHATGPT}/conversation/not-a-conversation")
    counters = up.counters(route="chatgpt.conversation", ids=True)
    route = counters["routes"]["chatgpt.conversation"]
    assert (route["total"], route["by_status"]) == (7, {"200": 6, "404": 1})
    assert (route["distinct_ids"], route["max_per_id"]) == (4, 3)
    assert counters["ids"] == {ids[0]: 1, ids[1]: 2, ids[2]: 3, "not-a-conversation": 1}
    assert counters["routes"]["chatgpt.list"]["total"] == 1
    assert up.count("gmail.messages") == 0
    up.reset()
    zero = {"total": 0, "by_status": {}, "distinct_ids": 0, "max_per_id": 0}
    assert all(c == zero for c in up.counters()["routes"].values())


async def test_async_helpers_drive_the_same_server(up: UpstreamProcess) -> None:
    await up.aset_plan({"faults": [{"route": "gmail.labels", "status": 500, "times": 1}]})
    assert get(up, f"{GMAIL}/labels").status == 500
    assert get(up, f"{GMAIL}/labels").status == 200
    assert (await up.acounters())["routes"]["gmail.labels"]["by_status"] == {"200": 1, "500": 1}
    assert await up.afault_ids(0) == []  # a route without ids: the fault matches every request
    await up.areset()
    assert await up.acount("gmail.labels") == 0
    assert get(up, f"{GMAIL}/labels").status == 500  # reset restarts `times` too
    assert (await up.aget_plan())["faults"][0]["resolved_count"] is None


def test_invalid_plans_are_refused(up: UpstreamProcess) -> None:
    with pytest.raises(UpstreamError, match="unknown route"):
        up.set_plan({"faults": [{"route": "gmail.nothing"}]})
    with pytest.raises(UpstreamError, match="has no ids"):
        up.set_plan({"faults": [{"route": "gmail.messages", "ids": ["x"]}]})
    with pytest.raises(UpstreamError, match="extra_forbidden"):
        up.set_plan({"faultz": []})


def test_presets_load() -> None:
    assert preset_plans() == ["case-a", "case-c", "case-d", "case-e"]
    assert load_plan("case-c").faults[0].ids == [SPECIAL]
    assert load_plan("case-d").limits.bank_max_range_days == 100
    e = load_plan("case-e").faults[0]
    assert (e.sample and e.sample.count, e.status, e.retry_after) == (4188, 429, 86400)


def test_seed_world_has_the_incident_sizes() -> None:
    with UpstreamProcess(world="seed", plan="case-e") as seed:
        profile = ok(seed, f"{GMAIL}/profile")
        assert (profile["labelsTotal"], profile["threadsTotal"], profile["messagesTotal"]) == (
            24,
            12_372,
            38_000,
        )
        assert profile["labelsTotal"] + profile["threadsTotal"] + profile["messagesTotal"] == 50_396
        assert len(ok(seed, f"{GMAIL}/labels")["labels"]) == 24
        assert ok(seed, f"{CHATGPT}/conversations")["total"] == 14_784
        channels = [c["id"] for c in all_slack(seed, "conversations.list", "channels")]
        assert len(set(channels)) == 3_240 and SPECIAL in channels
        assert len(all_slack(seed, "users.list", "members")) == 1_460
        assert seed.request("GET", "/_control/world")["slack"]["messages"] == 574_274
        assert seed.get_plan()["faults"][0]["resolved_count"] == 4_188
        assert seed.counters()["routes"]["slack.channels"]["total"] == 4  # pages of 1000


def test_a_process_that_cannot_start_reports_its_output() -> None:
    with pytest.raises(UpstreamError, match="unknown world 'nowhere'"):
        UpstreamProcess(world="nowhere", startup_timeout=20).start()
