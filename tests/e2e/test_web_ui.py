"""The Temporal web UI of `pdpp-orch dev`, driven in headless Chromium the way an operator uses
it: filter the workflow list by our search attributes, find the run by its summary, open it and
read its outcome in the current details. Screenshots are kept under the test's tmp directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pdpp_orch.devstack import find_running
from tests.conftest import CONNECTORS
from tests.connectors import grant

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it with apt-get where it can)",
)
ABC = CONNECTORS / "abc.json"
EVIL_REASON = "[sign in again here](https://evil.example) <b>now</b>"
SCRIPTED = CONNECTORS / "scripted.py"
# Flags for a machine with no internet: no background fetches, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pdpp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdpp_orch.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """`pdpp-orch dev` in the background with a registry of one connector that skips a channel;
    yields the environment other commands need and the UI's URL."""
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            [
                {"records": {"stream": "a", "count": 7}},
                {
                    "msg": {
                        "type": "SKIP_RESULT",
                        "stream": "a",
                        "reason": "rate_limited",
                        "resource_ids": ["c1"],
                    }
                },
                # A connector's words in the details are text, never a link (issue 26).
                {"msg": {"type": "SKIP_RESULT", "stream": "b", "reason": EVIL_REASON}},
                {"state": "a"},
                {"done": "succeeded"},
            ]
        )
    )
    plans = {
        "uichat": plan,
        "uiok": tmp_path / "ok.json",
        "uifail": tmp_path / "fail.json",
        "uicancel": tmp_path / "cancel.json",
    }
    plans["uiok"].write_text(json.dumps([{"records": {"stream": "a", "count": 2}}, {"done": "succeeded"}]))
    plans["uifail"].write_text(json.dumps([{"exit": 1}]))
    plans["uicancel"].write_text(json.dumps([{"records": {"stream": "a", "count": 3}}, {"sleep": 120}]))
    registry = tmp_path / "connectors.toml"
    registry.write_text(
        "".join(
            f"[connectors.{name}]\ncommand = {json.dumps([sys.executable, str(SCRIPTED)])}\n"
            f"manifest = {json.dumps(str(ABC))}\nenv = {{ SCRIPT_PLAN = {json.dumps(str(path))} }}\n"
            + grant(tmp_path)
            # A budget, so the list has a budget workflow to keep out of the runs.
            + ('budget = { units = 1000, window = "1h" }\n' if name == "uichat" else "")
            for name, path in plans.items()
        )
    )
    data_dir = tmp_path / "stack"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TEMPORAL_ADDRESS", "PDPP_DATABASE_URL", "PDPP_TASK_QUEUE")
    }
    env |= {"PDPP_DATA_DIR": str(data_dir), "PDPP_CONNECTORS": str(registry)}
    log = (tmp_path / "dev.log").open("wb")
    # A preferred Temporal port that is taken: `dev` uses another one, and says so.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdpp_orch.cli",
            "dev",
            "--temporal-port",
            str(busy.getsockname()[1]),
            "--ui-port",
            str(free_port()),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(600):
            ep = find_running(data_dir)
            if ep is not None:
                break
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            subprocess.run(["sleep", "0.1"])
        else:
            raise AssertionError("pdpp-orch dev did not come up in 60 s")
        yield env, ep.ui_url
    finally:
        busy.close()
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()


async def frame_texts(page: Any) -> list[str]:
    """The HTML of every frame on the page. The UI replaces its markdown frames as it re-renders:
    one detached while being read is skipped (the caller polls again)."""
    from playwright.async_api import Error as PlaywrightError

    texts = []
    for frame in page.frames:
        try:
            texts.append(await frame.content())
        except PlaywrightError as e:
            if "detached" not in str(e):
                raise
    return texts


async def test_web_ui_lists_the_run_by_our_filter_and_shows_its_summary_and_outcome(
    dev_stack: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    env, ui = dev_stack
    done = await asyncio.to_thread(pdpp, env, "run", "uichat", "--wait", "--json")
    assert done.returncode == 3, done.stderr  # partially_completed
    run_id = json.loads(done.stdout)["run_id"]
    query = 'PdppConnector="uichat" AND PdppRunStatus="partially_completed"'
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1600, "height": 1000})
        # Visibility is eventually consistent: reload until the filter finds the run.
        for _ in range(20):
            await page.goto(f"{ui}/namespaces/default/workflows?query={quote(query)}")
            try:
                await page.get_by_text(run_id).first.wait_for(timeout=3000)
                break
            except Exception:
                continue
        await page.screenshot(path=str(tmp_path / "workflow-list.png"), full_page=True)
        assert await page.get_by_text(run_id).count() >= 1

        await page.get_by_role("link", name=run_id).first.click()
        try:
            await page.get_by_text("partially_completed").first.wait_for(timeout=15000)
            # The summary and the current details (the outcome in markdown) are the run's
            # user metadata.
            await page.get_by_text("User Metadata", exact=True).first.click()
            # The UI renders each markdown field in a sandboxed frame of its own.
            for _ in range(50):
                frames = await frame_texts(page)
                if sum("rate_limited: 1" in f or "uichat · forward · manual" in f for f in frames) >= 2:
                    break
                await asyncio.sleep(0.2)
        finally:
            await page.screenshot(path=str(tmp_path / "workflow-details.png"), full_page=True)
        await browser.close()
    assert any("uichat · forward · manual" in f for f in frames)  # the static summary
    assert any("rate_limited: 1" in f and "partially_completed" in f for f in frames)  # the outcome
    # The connector's reason is shown as it wrote it, and is no link and no markup.
    assert any("[sign in again here](https://evil.example) &lt;b&gt;now&lt;/b&gt;: 1" in f for f in frames)
    assert not any("evil.example" in link for f in frames for link in re.findall(r"<a [^>]*>", f))
    assert not any("<b>now" in f for f in frames)
    print(f"screenshots: {tmp_path}/workflow-list.png, {tmp_path}/workflow-details.png")


async def runs_table(
    context: Any, url: str, run_ids: list[str], shot: Path
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the workflow list at `url` once it shows every run of `run_ids`
    (visibility is eventually consistent), screenshotted into `shot`; the header cells must lie
    within the window, not off-screen to its right."""
    page = await context.new_page()
    row = page.locator('[data-testid="workflows-summary-configurable-table-row"]')
    cells: list[list[str]] = []
    header: list[str] = []
    for _ in range(20):
        await page.goto(url)
        try:
            await row.first.wait_for(timeout=3000)
            header = [h.strip().lower() for h in await page.locator("thead th").all_inner_texts()]
            cells = [
                [c.strip().lower() for c in await row.nth(i).locator("td").all_inner_texts()]
                for i in range(await row.count())
            ]
            if all(any(run_id.lower() in c for r in cells for c in r) for run_id in run_ids):
                break
        except Exception:
            pass
        await asyncio.sleep(0.5)
    if "pdpprunstatus" in header:
        box = await page.locator("thead th", has_text="PdppRunStatus").bounding_box()
        assert box is not None and box["x"] + box["width"] <= page.viewport_size["width"], box
    await page.screenshot(path=str(shot), full_page=True)
    await page.close()
    return header, cells


async def test_the_runs_list_tells_every_outcome_apart_with_no_setup(
    dev_stack: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    """The link `pdpp-orch dev` prints, in a browser that never configured anything: succeeded
    and partially completed runs (both Completed to Temporal) told apart in the list itself, with
    failed and cancelled ones, Temporal's badge and ours side by side."""
    from playwright.async_api import async_playwright

    from pdpp_orch.control.stack import RUNS_QUERY, workflows_url

    env, ui = dev_stack
    partial = await asyncio.to_thread(pdpp, env, "run", "uichat", "--wait", "--json")
    ok = await asyncio.to_thread(pdpp, env, "run", "uiok", "--wait", "--json")
    failed = await asyncio.to_thread(pdpp, env, "run", "uifail", "--wait", "--json")
    assert (partial.returncode, ok.returncode, failed.returncode) == (3, 0, 1), failed.stderr
    started = await asyncio.to_thread(pdpp, env, "run", "uicancel", "--json")
    cancel_id = json.loads(started.stdout)["run_id"]
    await asyncio.sleep(3)  # collecting, then cancelled
    cancelled = await asyncio.to_thread(pdpp, env, "cancel", cancel_id, "--wait", "--json")
    assert cancelled.returncode == 1 and json.loads(cancelled.stdout)["status"] == "cancelled"
    runs = {
        json.loads(partial.stdout)["run_id"]: ("completed", "partially_completed"),
        json.loads(ok.stdout)["run_id"]: ("completed", "succeeded"),
        json.loads(failed.stdout)["run_id"]: ("failed", "failed"),
        cancel_id: ("canceled", "cancelled"),
    }
    url = workflows_url(ui, RUNS_QUERY)  # the `runs` link `pdpp-orch dev` prints
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        fresh = await browser.new_context(viewport={"width": 1280, "height": 800})
        header, cells = await runs_table(fresh, url, list(runs), tmp_path / "runs-list.png")
        # A browser whose operator chose columns of their own keeps them.
        own = await browser.new_context(viewport={"width": 1280, "height": 800})
        choice = json.dumps(json.dumps({"default": [{"label": "Status"}, {"label": "Workflow ID"}]}))
        await own.add_init_script(f"localStorage.setItem('namespace-workflow-table-columns', {choice});")
        own_header, _ = await runs_table(own, url, list(runs), tmp_path / "runs-list-own-columns.png")
        await browser.close()
    for run_id, (badge, status) in runs.items():
        [r] = [r for r in cells if any(run_id.lower() in c for c in r)]
        shown = dict(zip(header, r, strict=False))
        # Temporal's own badge, and ours beside it.
        assert badge in shown["status"] and shown["pdpprunstatus"] == status, r
    assert not any("budget-" in c for r in cells for c in r), "budget workflows stay out of the runs list"
    assert "workflow id" in own_header and "pdpprunstatus" not in own_header
    # The preferred Temporal port was busy (see dev_stack): `dev` said which port it uses instead.
    ep = find_running(Path(env["PDPP_DATA_DIR"]))
    assert ep is not None
    said = re.search(
        r"port (\d+) is busy: Temporal \(--temporal-port\) uses port (\d+) instead",
        (tmp_path / "dev.log").read_text(),
    )
    assert said is not None and said.group(2) == ep.temporal_address.rsplit(":", 1)[1] != said.group(1)
    print(f"screenshots: {tmp_path}/runs-list.png, {tmp_path}/runs-list-own-columns.png")
