"""The deployment files let the worker sandbox its connectors (issue 26, docs/operations.md "The
worker's container"): the Kubernetes slots and the compose worker keep the settings the
launcher needs, and the seccomp profile they name allows exactly its calls — checked against the
profile's text, and by making a sandbox under it (as an unprivileged user, with libseccomp)."""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import marshal
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.sandbox import launch
from activities.sandbox.view import system, view
from tests.deploy.test_deploy import (
    COMPOSE_DIR,
    DEPLOY,
    WORKER_SLOTS,
    compose,
    compose_env,
    container_env,
    dockerfile_user,
    k8s_doc,
)

PROFILE = DEPLOY / "seccomp" / "pdpp-worker.json"
SECCOMP_EXEC = Path(__file__).with_name("seccomp_exec.py")
LAUNCHER = Path(launch.__file__)
# What the launcher calls (activities/sandbox/launch.py), and how: its namespaces exactly.
SANDBOX_FLAGS = launch.CLONE_NEWNS | launch.CLONE_NEWPID | launch.CLONE_NEWIPC | launch.CLONE_NEWUSER
MOUNT_CALLS = {"mount", "umount2", "pivot_root", "mount_setattr"}
LAUNCHER_CALLS = {"prctl", "capset", "setrlimit", "prlimit64", "execve", "wait4", "kill", "pipe2",
                  "dup2", "symlink", "mkdir", "chdir", "openat", "write", "read", "setresuid",
                  "setresgid", "setgroups", "statfs", "select", "rt_sigaction"}  # fmt: skip
# Namespace flags clone may not take (they are unshare's, and the sandbox's only).
NAMESPACE_FLAGS = 0x7E020000
# Never, for the worker or a connector: other namespaces, the kernel's keyrings, modules, eBPF,
# tracing other processes, file handles (the "shocker" escape), io_uring, the new mount API.
FORBIDDEN = {"setns", "chroot", "keyctl", "add_key", "request_key", "init_module", "finit_module",
             "delete_module", "kexec_load", "kexec_file_load", "bpf", "perf_event_open", "ptrace",
             "process_vm_readv", "process_vm_writev", "open_by_handle_at", "userfaultfd",
             "io_uring_setup", "fsopen", "fsmount", "move_mount", "open_tree", "reboot", "swapon",
             "sethostname", "iopl", "ioperm"}  # fmt: skip


def profile() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(PROFILE.read_text(encoding="utf-8"))
    return doc


def rules_for(name: str) -> list[dict[str, Any]]:
    return [r for r in profile()["syscalls"] if name in r["names"]]


def unconditionally_allowed() -> set[str]:
    return {
        n
        for r in profile()["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        for n in r["names"]
    }


# -- the settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("slot", WORKER_SLOTS)
def test_the_worker_pods_let_the_worker_sandbox_its_connectors(slot: str) -> None:
    pod = k8s_doc("Deployment", slot)["spec"]["template"]["spec"]
    [c] = pod["containers"]
    sc = c["securityContext"]
    # A user namespace of its own, which alone lets /proc be unmasked: a masked one (paths
    # mounted over it) forbids the fresh /proc each connector's PID namespace needs.
    assert pod["hostUsers"] is False
    assert sc["procMount"] == "Unmasked"
    # The shipped profile, installed on the node under the name the pod gives it.
    seccomp = sc.get("seccompProfile") or pod["securityContext"]["seccompProfile"]
    assert seccomp == {"type": "Localhost", "localhostProfile": f"pdpp/{PROFILE.name}"}
    # The runtime's default AppArmor profile denies every mount.
    assert sc["appArmorProfile"]["type"] in ("Unconfined", "Localhost")
    # ... and nothing else is loosened: no capability, no privilege gain, not root.
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False
    assert "privileged" not in sc and sc["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    # Sandboxed by default: no opt-out here.
    assert "PDPP_SANDBOX" not in container_env(c)


def test_the_compose_worker_may_sandbox_its_connectors() -> None:
    worker = compose()["services"]["worker"]
    options = dict(o.replace(":", "=", 1).split("=", 1) for o in worker["security_opt"])
    assert (COMPOSE_DIR / options["seccomp"]).resolve() == PROFILE.resolve()
    assert options["systempaths"] == "unconfined"  # Docker's word for an unmasked /proc
    assert options["apparmor"] == "unconfined"  # docker-default denies every mount
    assert options["no-new-privileges"] == "true"
    assert worker["cap_drop"] == ["ALL"] and "cap_add" not in worker
    assert not worker.get("privileged") and "user" not in worker and dockerfile_user() > 0
    assert "PDPP_SANDBOX" not in compose_env(worker)


# -- the profile ------------------------------------------------------------------------------


def test_the_seccomp_profile_allows_the_sandbox_its_calls_and_no_more() -> None:
    p = profile()
    # The OCI format, which containerd, CRI-O and runc read for a Localhost profile (and Docker
    # too): Docker's own keys (archMap, includes, excludes) would be ignored there, silently.
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and "archMap" not in p
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"} <= set(p["architectures"])
    assert not any({"includes", "excludes"} & set(r) for r in p["syscalls"])
    allowed = unconditionally_allowed()
    # unshare: the launcher's namespaces, exactly (the worker is not root in the container).
    [unshare] = rules_for("unshare")
    assert unshare["action"] == "SCMP_ACT_ALLOW"
    assert unshare["args"] == [{"index": 0, "value": SANDBOX_FLAGS, "op": "SCMP_CMP_EQ"}]
    assert MOUNT_CALLS | LAUNCHER_CALLS <= allowed
    # clone makes processes and threads, never namespaces; clone3's flags are out of a filter's
    # reach, so it says ENOSYS and the C library falls back to clone.
    [clone] = rules_for("clone")
    assert clone["args"] == [
        {"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    [clone3] = rules_for("clone3")
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    named = {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert not FORBIDDEN & named, FORBIDDEN & named
    assert {"unshare", "clone", "clone3", "personality", "socket"}.isdisjoint(allowed)


# -- the profile at work ----------------------------------------------------------------------

NOBODY = 65534
MASKABLE = ("/proc/kcore", "/proc/keys", "/proc/timer_list")


def system_python() -> str | None:
    return next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)


def make_sandbox(tmp_path: Path, python: str, *wrap: str, without_rules: bool = False) -> str:
    """Make a connector's sandbox (the launcher, running `true`) as nobody under the profile,
    `wrap` around it all; what the launcher reported ("" once the connector ran)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    os.chown(work, NOBODY, NOBODY)
    spec = {
        "argv": ["true"], "cwd": str(work), "uid": None, "userns": True,
        "tmp_bytes": 1 << 20, "limits": {}, "ops": view(system(), [work], []),
    }  # fmt: skip
    spec_r, spec_w = os.pipe()
    os.write(spec_w, marshal.dumps(spec))
    os.close(spec_w)
    err_r, err_w = os.pipe()
    filtered = [python, "-I", "-S", str(SECCOMP_EXEC), str(PROFILE)]
    filtered += ["--without-sandbox-rules"] if without_rules else []
    cmd = [*wrap, "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *filtered, "--"]
    cmd += [python, "-I", "-S", str(LAUNCHER), str(spec_r), str(err_w)]
    done = subprocess.run(
        cmd, pass_fds=(spec_r, err_w), capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"}
    )
    os.close(err_w)
    os.close(spec_r)
    with contextlib.closing(os.fdopen(err_r, "rb")) as err:
        said = err.read().decode()
    assert said or done.returncode == 0, done.stderr
    return said


@contextlib.contextmanager
def masked_proc() -> Iterator[list[str]]:
    """A wrapper that runs its command with a /proc file mounted over, as a container runtime
    masks it (in a mount namespace of its own)."""
    path = next((p for p in MASKABLE if os.path.exists(p)), None)
    if path is None or not shutil.which("unshare"):
        pytest.skip("no /proc file to mask, or no unshare(1)")
    yield [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount --bind /dev/null {path} && exec "$@"',
        "masked",
    ]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.skipif(not ctypes.util.find_library("seccomp"), reason="needs libseccomp")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="the profile's architectures")
def test_under_the_profile_a_sandbox_is_made_and_without_it_or_with_a_masked_proc_not() -> None:
    python = system_python()
    if python is None:
        pytest.skip("no system python3 that an unprivileged user can run")
    # Not pytest's tmp_path: nobody must reach the connector's directory, and pytest's are 0700.
    with tempfile.TemporaryDirectory(prefix="pdpp-seccomp-") as tmp:
        os.chmod(tmp, 0o755)
        check_sandboxes(Path(tmp), python)


def check_sandboxes(tmp_path: Path, python: str) -> None:
    made = make_sandbox(tmp_path, python)
    if made.startswith("sandbox: unshare") and "not permitted" not in made:
        pytest.skip(f"user namespaces are not allowed here: {made}")
    # The runtime's default for a container without capabilities: no unshare at all.
    assert make_sandbox(tmp_path, python, without_rules=True) == "sandbox: unshare: Operation not permitted"
    # The profile, but /proc masked (the kernel will not mount a fresh one: mount_too_revealing).
    with masked_proc() as wrap:
        assert (
            make_sandbox(tmp_path, python, *wrap) == "sandbox: mount /newroot/proc: Operation not permitted"
        )
    # The profile and an unmasked /proc: the connector ran in its sandbox.
    assert made == ""
