"""The pure parts of issue 26's fences (docs/security.md): what a sandbox shows, what the
registry says of it, how an unsandboxed run is told, and the codec server's bounds."""

from __future__ import annotations

import base64
import json
import resource
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from activities.sandbox.view import view
from pdpp_orch import advice
from pdpp_orch.cli.keys import _who
from pdpp_orch.codec import EncryptionCodec
from pdpp_orch.codec_server import MAX_REQUEST_BYTES, make_app
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import Mode, RunOutcome, RunStatus, SandboxMode, Trigger
from pdpp_orch.registry import Registry
from pdpp_orch.sandbox_config import Limits
from tests.unit.test_codec import MARKER, keyring, payload


def test_the_view_binds_parents_first_hides_over_them_and_regrants_inside(tmp_path: Path) -> None:
    data = tmp_path / "data"
    own = data / "connectors" / "c"
    own.mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "pkg").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "src")
    steps = view([tmp_path, tmp_path / "src" / "pkg", tmp_path / "link"], [own], [data])
    assert steps == [
        ["bind", str(tmp_path), False],  # src/pkg and link's target are visible through it
        ["hide", str(data)],
        ["bind", str(own), True],  # explicitly granted inside what is hidden: over the hiding
        ["link", str(tmp_path / "link"), str(tmp_path / "src")],
    ]
    assert view([tmp_path / "missing"], [], []) == []


def test_the_registry_grants_paths_and_limits_and_opts_out_explicitly(tmp_path: Path) -> None:
    reg = tmp_path / "connectors.toml"
    reg.write_text(
        '[connectors.x]\ncommand = ["true"]\nmanifest = "m.json"\nsandbox = false\n'
        'paths = ["in", { path = "~/out", writable = true }]\n'
        "[connectors.x.limits]\nmemory_mb = 512\nprocesses = 64\n"
        '[connectors.y]\ncommand = ["true"]\nmanifest = "m.json"\nenv = { K = "file:k" }\n'
    )
    registry = Registry.load(reg)
    x = registry.get("x")
    assert x.sandbox is False
    assert [(g.path, g.writable) for g in x.paths] == [
        (str(tmp_path / "in"), False),
        (str(Path("~/out").expanduser()), True),
    ]
    assert x.limits.rlimits() == {
        "RLIMIT_DATA": 512 << 20,
        "RLIMIT_NPROC": 64,
        "RLIMIT_FSIZE": Limits().file_size_mb << 20,
        "RLIMIT_CPU": Limits().cpu_seconds,
        "RLIMIT_CORE": 0,  # a core dump would hold the connector's secrets
    }
    assert registry.get("y").sandbox is True
    assert {str(p) for p in registry.secret_files()} >= {str(reg), str(tmp_path / "k")}
    assert all(hasattr(resource, name) for name in x.limits.rlimits())
    reg.write_text(
        '[connectors.x]\ncommand = ["true"]\nmanifest = "m.json"\n[connectors.x.limits]\nmemory = 1\n'
    )
    with pytest.raises(ConfigError, match=r"connectors\.x\.limits\.memory"):
        Registry.load(reg)


def outcome(sandbox: SandboxMode | None) -> RunOutcome:
    now = datetime.now(UTC)
    return RunOutcome(
        run_id="r", connector="c", trigger=Trigger.MANUAL, mode=Mode.FORWARD, status=RunStatus.SUCCEEDED,
        needs_retry=False, reason=None, records_emitted=0, records_durable=0, records_rejected=0,
        state_streams_staged=0, state_streams_committed=0, checkpoint_commit_status="disabled",
        skipped_by_reason={}, gaps_opened=0, gaps_recovered=0, gaps_open_total=0, streams=[],
        started_at=now, finished_at=now, sandbox=sandbox,
    )  # fmt: skip


def test_a_run_without_a_sandbox_says_so_first_in_what_comes_next() -> None:
    now = datetime.now(UTC)
    [warning, nothing] = advice.next_steps(outcome(SandboxMode.OFF), now)
    assert warning.startswith("ran without a sandbox") and nothing == "nothing to do"
    assert advice.next_steps(outcome(SandboxMode.UID), now) == ["nothing to do"]
    assert advice.next_steps(outcome(None), now) == ["nothing to do"]  # runs from before


def decode_body() -> str:
    return json.dumps({"payloads": []})


@pytest.mark.parametrize(
    ("host", "names", "status"),
    [
        ("127.0.0.1:8888", (), 200),
        ("localhost:8888", (), 200),
        ("[::1]:8888", (), 200),
        ("evil.example:8888", (), 421),  # a DNS name of a web page's, pointed at this machine
        ("codec.internal", ("codec.internal",), 200),
    ],
)
async def test_without_a_token_the_codec_server_answers_only_for_its_own_names(
    host: str, names: tuple[str, ...], status: int
) -> None:
    app = make_app(EncryptionCodec(keyring("k1")), None, [], names)
    async with TestClient(TestServer(app)) as http:
        r = await http.post("/decode", data=decode_body(), headers={"Host": host})
        assert r.status == status
        assert (await http.get("/health", headers={"Host": "10.1.2.3:8888"})).status == 200  # probes


async def test_the_codec_server_refuses_a_request_over_its_bound_and_decodes_one_under() -> None:
    codec = EncryptionCodec(keyring("k1"))
    [sealed] = await codec.encode([payload(MARKER * (1 << 16))])  # ~1 MiB
    item = {
        "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
        "data": base64.b64encode(sealed.data).decode(),
    }
    under = json.dumps({"payloads": [item] * 4})
    over = json.dumps({"payloads": [item] * 8})
    assert len(under) < MAX_REQUEST_BYTES < len(over)
    async with TestClient(TestServer(make_app(codec, "t", []))) as http:
        auth = {"Authorization": "Bearer t"}
        assert (await http.post("/decode", data=under, headers=auth)).status == 200
        assert (await http.post("/decode", data=over, headers=auth)).status == 413


def test_the_codec_server_says_who_may_decrypt() -> None:
    assert _who("t", "0.0.0.0") == "bearer token required"
    assert _who(None, "127.0.0.1") == "no token: anyone on this machine"
    assert _who(None, "0.0.0.0").startswith("NO TOKEN: anyone who reaches this address")
