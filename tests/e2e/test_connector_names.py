"""A connector name a command does not know is said to be unknown (exit 2, as `run` says it),
with the names it knows, in every command that takes one; a connector the store holds data of
stays readable though no registry here names it."""

from __future__ import annotations

import asyncio
import uuid

from pdpp_orch.models import Mode, Trigger
from tests.conftest import Harness
from tests.helpers import cli


async def test_an_unknown_connector_is_refused_and_stored_data_stays_readable(
    harness: Harness, pg_url: str
) -> None:
    registered = harness.scripted([{"done": "succeeded"}])  # no run yet: known, holds nothing
    elsewhere = f"gone{uuid.uuid4().hex[:8]}"  # its registry entry erased: only the store knows it
    run_id = f"{elsewhere}-1"
    await harness.store.runs.start(run_id, elsewhere, Trigger.MANUAL, Mode.FORWARD)
    await harness.store.pool.execute(
        "INSERT INTO records (connector, stream, key, data, first_run_id, last_run_id) "
        "VALUES ($1, 'a', 'k1', '{\"n\": 1}', $2, $2)",
        elsewhere,
        run_id,
    )
    nope = "nope" + uuid.uuid4().hex[:6]
    refused = [
        ("records", nope),
        ("gaps", nope),
        ("recover", "show", nope),
        ("erase", nope, "--yes"),
        ("report", nope),
        ("runs", "--connector", nope),
    ]
    broken = harness.tmp / "broken.toml"
    broken.write_text("[connector.x]\n")  # a registry that does not load: the store is asked first
    readable = [
        ("records", elsewhere, "--connectors", str(broken)),
        ("runs", "--connector", elsewhere),
        ("records", registered),
    ]
    said = await asyncio.gather(*(cli(harness, pg_url, *a, COLUMNS="200") for a in refused + readable))
    for args, (code, out, err) in zip(refused, said, strict=False):
        assert code == 2 and out == "", (args, code, out, err)
        assert f"unknown connector '{nope}' (known: " in err, (args, err)
        assert registered in err and "with data here but not in this registry: " in err, (args, err)
        assert elsewhere in err.split("not in this registry:")[1], (args, err)
    (c1, records, e1), (c2, runs, e2), (c3, none, e3) = said[len(refused) :]
    assert (c1, c2) == (0, 0) and "k1" in records and run_id in runs, (e1, e2)
    assert c3 == 0 and none == "" and f"no records of '{registered}'" in e3, e3
