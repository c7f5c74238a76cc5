"""compare.py's peers: dlt's postgres destination and the Singer target-postgres (MeltanoLabs).

They come from the `bench` extra; `version` says whether one is installed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from _measure import Row, count_rows, measure, variants
from _stack import CHECKPOINT_EVERY, Stack, example_records

SINGER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "n": {"type": "integer"},
        "title": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "body": {"type": "string"},
    },
}


def pg_params(dsn: str) -> dict[str, Any]:
    """The embedded server's DSN (a Unix socket directory in `?host=`, trust authentication) as
    the separate fields the peers take. Both refuse an empty password, which trust ignores."""
    url = urlsplit(dsn)
    query = dict(parse_qsl(url.query))
    return {
        "host": query.get("host") or url.hostname or "localhost",
        "port": url.port or 5432,
        "user": unquote(url.username or "postgres"),
        "password": unquote(url.password or "") or "unused",
        "database": url.path.lstrip("/") or "postgres",
    }


def version(dist: str) -> str | None:
    """The installed version of `dist`, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_dlt(dsn: str, records: list[dict[str, object]], workdir: Path, file_format: str | None) -> float:
    """Seconds dlt takes to merge `records` into its postgres destination."""
    import dlt

    # No usage reports to the vendor (there is no network here anyway, and a failing send
    # would cost time inside the measurement).
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    dataset = f"bench_dlt_{file_format or 'default'}"
    pg = pg_params(dsn)
    # dlt insists on a host; libpq lets the socket directory in `?host=` override it.
    credentials = f"postgresql://{pg['user']}:{pg['password']}@localhost/{pg['database']}?host={pg['host']}"
    pipeline = dlt.pipeline(
        pipeline_name=dataset,
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name=dataset,
        pipelines_dir=str(workdir / "dlt"),
    )
    t0 = time.perf_counter()
    pipeline.run(
        records,
        table_name="notes",
        write_disposition="merge",
        primary_key="id",
        loader_file_format=file_format,  # type: ignore[arg-type]
    )
    return time.perf_counter() - t0


def singer_messages(path: Path, n: int) -> None:
    """SCHEMA, then RECORDs with a STATE every 10,000, as a Singer tap would write them."""
    with path.open("wb") as f:
        f.write(
            orjson.dumps(
                {"type": "SCHEMA", "stream": "notes", "schema": SINGER_SCHEMA, "key_properties": ["id"]}
            )
            + b"\n"
        )
        for i, (_, data) in enumerate(example_records(n)):
            f.write(orjson.dumps({"type": "RECORD", "stream": "notes", "record": data}) + b"\n")
            if (i + 1) % CHECKPOINT_EVERY == 0 or i + 1 == n:
                f.write(
                    orjson.dumps({"type": "STATE", "value": {"bookmarks": {"notes": {"offset": i + 1}}}})
                    + b"\n"
                )


async def run_singer(dsn: str, messages: Path, workdir: Path, schema: str, use_copy: bool) -> float:
    """Seconds target-postgres takes to upsert the Singer `messages` into `schema`."""
    exe = Path(sys.executable).parent / "target-postgres"
    pg = pg_params(dsn)
    config = {
        # A socket directory survives only as a query parameter of the URL form.
        "sqlalchemy_url": (
            f"postgresql+psycopg://{pg['user']}:{pg['password']}@/{pg['database']}"
            f"?host={pg['host']}&port={pg['port']}"
        ),
        "default_target_schema": schema,
        "use_copy": use_copy,
    }
    cfg = workdir / f"{schema}.json"
    cfg.write_text(json.dumps(config))
    log = workdir / f"{schema}.log"
    with messages.open("rb") as stdin, log.open("wb") as err:
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            str(exe), "--config", str(cfg), stdin=stdin, stdout=asyncio.subprocess.DEVNULL, stderr=err
        )
        rc = await proc.wait()
        elapsed = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"target-postgres exited {rc}; see the end of {log}:\n{log.read_text()[-2000:]}")
    return elapsed


async def measure_dlt(
    rows: list[Row], stack: Stack, records: list[dict[str, object]], n: int, skip: set[str]
) -> None:
    """dlt's rows (the n `records`): its default loader file format, and csv."""
    dlt_v = version("dlt")
    for key, fmt, label in variants(
        rows, skip, dlt_v, "dlt", (("dlt", None, "default loader"), ("dlt_csv", "csv", "csv"))
    ):
        dataset = f"bench_dlt_{fmt or 'default'}"

        async def run_it(fmt: str | None = fmt) -> float:
            return await asyncio.to_thread(run_dlt, stack.dsn, [dict(r) for r in records], stack.workdir, fmt)

        async def check_it(dataset: str = dataset) -> int:
            return await count_rows(stack.dsn, f"{dataset}.notes")

        await measure(rows, stack, key, f"dlt {dlt_v} merge ({label})", n, run_it, check_it)


async def measure_singer(rows: list[Row], stack: Stack, n: int, skip: set[str]) -> None:
    """target-postgres's rows: its defaults, and use_copy."""
    singer_v = version("meltanolabs-target-postgres")
    messages = stack.workdir / "singer.jsonl"
    for key, use_copy, label in variants(
        rows,
        skip,
        singer_v,
        "target-postgres",
        (("singer", False, "defaults"), ("singer_copy", True, "use_copy")),
    ):
        if not messages.exists():
            singer_messages(messages, n)
        schema = f"bench_singer_{key}"

        async def run_singer_it(schema: str = schema, use_copy: bool = use_copy) -> float:
            return await run_singer(stack.dsn, messages, stack.workdir, schema, use_copy)

        async def check_singer(schema: str = schema) -> int:
            return await count_rows(stack.dsn, f"{schema}.notes")

        await measure(
            rows, stack, key, f"target-postgres {singer_v} upsert ({label})", n, run_singer_it, check_singer
        )
