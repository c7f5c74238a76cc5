"""What a connector started (a browser, a helper) must not outlive a worker killed with
SIGKILL: every connector carries its worker's tag in its environment, which its children
inherit, and a starting worker (or a retried attempt) kills what names a worker that is gone."""

from __future__ import annotations

import functools
import logging

import psutil

log = logging.getLogger(__name__)

# Set in every connector's environment to the worker that started it (pid and start time, so a
# reused pid is not taken for it): whatever the connector starts inherits it, which is how a
# later worker recognises what a dead one left behind.
OWNER_ENV = "PDPP_CONNECTOR_OWNER"


@functools.cache
def owner_tag() -> str:
    """This worker process as OWNER_ENV names it."""
    me = psutil.Process()
    return f"{me.pid}:{int(me.create_time() * 1000)}"


def _alive(tag: str) -> bool:
    pid, _, started = tag.partition(":")
    try:
        return str(int(psutil.Process(int(pid)).create_time() * 1000)) == started
    except (ValueError, psutil.NoSuchProcess):
        return False
    except psutil.Error:
        return True  # not ours to judge


def reap_orphans() -> int:
    """SIGKILL the processes that connectors of dead workers on this machine left running.

    The kernel kills a connector when its worker dies (PR_SET_PDEATHSIG), but not what the
    connector started: a browser, a helper, a shell's child. Those go on calling the upstream,
    with nobody reading them. Returns how many were killed (and logs it)."""
    killed = 0
    for p in psutil.process_iter():
        try:
            tag = p.environ().get(OWNER_ENV)
            if tag and tag != owner_tag() and not _alive(tag):
                p.kill()
                killed += 1
        except psutil.Error:  # gone meanwhile, or another user's
            continue
    if killed:
        log.warning("killed %d process(es) left running by connectors of a dead worker", killed)
    return killed
