"""Run a command under a seccomp profile of the OCI format (deploy/seccomp/pdpp-worker.json), as a
container runtime would: the filter is loaded with no_new_privs, then the command is executed and
inherits it, with every process it starts.

    python -I -S seccomp_exec.py PROFILE [--without-sandbox-rules] -- COMMAND...

`--without-sandbox-rules` leaves out the rules for the connector sandbox's own calls: what the
runtime's default profile grants a container without CAP_SYS_ADMIN of them (nothing). Standard
library only (libseccomp through ctypes): it runs as an unprivileged user, on the system's Python.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

SANDBOX_CALLS = {"unshare", "mount", "umount2", "pivot_root", "mount_setattr"}
ACT_ALLOW = 0x7FFF0000
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}  # fmt: skip


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


def action(rule: dict, default_errno: int) -> int:
    if rule["action"] == "SCMP_ACT_ALLOW":
        return ACT_ALLOW
    if rule["action"] == "SCMP_ACT_ERRNO":
        return 0x00050000 | (rule.get("errnoRet", default_errno) & 0xFFFF)
    raise SystemExit(f"seccomp_exec: action {rule['action']} is not handled here")


def load(profile: dict, without_sandbox: bool) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]  # fmt: skip
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    errno = profile.get("defaultErrnoRet", 1)
    ctx = lib.seccomp_init(action({"action": profile["defaultAction"]}, errno))
    for rule in profile["syscalls"]:
        if without_sandbox and SANDBOX_CALLS & set(rule["names"]):
            continue
        args = rule.get("args") or []
        cmps = (ArgCmp * max(len(args), 1))(
            *(ArgCmp(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)) for a in args)
        )
        for name in rule["names"]:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a call of this architecture or this libseccomp: skipped, as runc does
                continue
            if lib.seccomp_rule_add_array(ctx, action(rule, errno), number, len(args), cmps) < 0:
                raise SystemExit(f"seccomp_exec: rule for {name} refused")
    if lib.seccomp_load(ctx) < 0:
        raise SystemExit("seccomp_exec: the filter could not be loaded")


def main() -> None:
    split = sys.argv.index("--")
    options, command = sys.argv[1:split], sys.argv[split + 1 :]
    with open(options[0], encoding="utf-8") as f:
        profile = json.load(f)
    load(profile, "--without-sandbox-rules" in options)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
