"""Fixtures of the multi-host tests: a network of hosts per test, torn down also on failure,
and, at the session's end, a sweep of whatever namespace this session left. Every test here
skips, saying why, where hosts cannot be made (not root, no `ip netns`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.hosts import netns
from tests.hosts.cluster import Cluster


@pytest.fixture(scope="session")
def hosts_available() -> Iterator[None]:
    why = netns.skip_reason()
    if why:
        pytest.skip(why)
    yield
    left = netns.sweep()
    assert not left, f"namespaces left behind by a test, swept now: {left}"


@pytest.fixture
def network(hosts_available: None, request: pytest.FixtureRequest) -> Iterator[netns.Network]:
    net = netns.Network.create(request.node.name[5:17].replace("_", ""))
    try:
        yield net
    finally:
        net.destroy()


@pytest.fixture
async def cluster(network: netns.Network, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = await Cluster.start(network, tmp_path)
    try:
        yield c
    finally:
        await c.close()
