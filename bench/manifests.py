"""Manifest loading: how long load_manifest (read, validate, check dependencies) takes for the
reference implementation's manifests and for synthetic ones of many streams.

    python bench/manifests.py [--dir ../shared/pdpp-ri/manifests] [--streams 10000 20000]

Best of 5 for each. A manifest that does not validate is named with the reason, not timed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pdpp_orch.manifest import ConfigError, load_manifest

ROOT = Path(__file__).resolve().parent.parent


def best_of(n: int, step: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(n):
        began = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - began)
    return best


def synthetic(streams: int, chain: bool) -> dict[str, Any]:
    """`streams` streams; with `chain`, each depends on the one before (the longest path the
    cycle check can walk)."""
    specs: list[dict[str, Any]] = []
    for i in range(streams):
        spec: dict[str, Any] = {"name": f"s{i:05d}", "primary_key": ["id"], "incremental": True}
        if chain and i:
            spec["parent_streams"] = [f"s{i - 1:05d}"]
        specs.append(spec)
    return {"connector_key": "synthetic", "version": "1.0.0", "streams": specs}


def reference(directory: Path) -> None:
    paths = sorted(directory.glob("*.json"))
    loads: list[Path] = []
    for p in paths:
        try:
            load_manifest(p)
            loads.append(p)
        except ConfigError as e:
            print(f"  does not validate: {p.name}: {str(e).split(': ', 1)[-1][:120]}")
    each = {p.name: best_of(5, partial(load_manifest, p)) for p in loads}
    total = best_of(5, lambda: [load_manifest(p) for p in loads])
    slowest = max(each, key=lambda k: each[k])
    print(f"{len(paths)} manifests in {directory}, {len(loads)} validate: all of those in "
          f"{total * 1000:.1f} ms; the slowest {slowest} {each[slowest] * 1000:.2f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description="Time load_manifest.")
    ap.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "pdpp-ri" / "manifests")
    ap.add_argument("--streams", type=int, nargs="*", default=[10_000, 20_000])
    args = ap.parse_args()
    if args.dir.is_dir():
        reference(args.dir)
    else:
        print(f"no manifests at {args.dir}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        for chain in (False, True):
            for n in args.streams:
                path.write_text(json.dumps(synthetic(n, chain)))
                took = best_of(5, lambda: load_manifest(path))
                shape = " in one chain of parent_streams" if chain else ""
                print(f"{n:,} streams{shape}: {took * 1000:.0f} ms")


if __name__ == "__main__":
    main()
