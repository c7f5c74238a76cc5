"""The long run's report: where its time went and the throughput of each tenth of its records,
interpolated between checkpoint polls."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from _stack import CpuMeter

from pdpp_orch.models import RunOutcome


@dataclass
class Sample:
    """One poll of the long run's latest proven checkpoint."""

    t: float  # seconds since the workflow start
    durable: int  # records before the latest proven checkpoint
    rss: int  # the worker's resident memory then


def crossing(samples: list[Sample], target: int) -> tuple[float, int]:
    """When `target` records were durable (interpolated between polls), and the RSS then."""
    prev = Sample(0.0, 0, samples[0].rss)
    for s in samples:
        if s.durable >= target:
            if s.durable == prev.durable:
                return s.t, s.rss
            return prev.t + (s.t - prev.t) * (target - prev.durable) / (s.durable - prev.durable), s.rss
        prev = s
    raise ValueError(f"{target:,} records were never durable")


@dataclass
class LongRun:
    """What the long run measured."""

    records: int
    every: int
    outcome: RunOutcome
    elapsed: float  # seconds from the workflow start to its outcome
    events: int  # history events of the run's workflow
    peak_mb: float  # the worker's peak RSS
    used: dict[str, float]  # CpuMeter.used()
    samples: list[Sample]
    inferred: bool  # the last sample is the outcome's, not a polled checkpoint


def report_long_run(run: LongRun) -> None:
    """The long run's summary, its throughput per tenth, and its machine-readable line."""
    records, elapsed, outcome = run.records, run.elapsed, run.outcome
    print(
        f"\nLong run: {records:,} records, a STATE every {run.every:,}, one worker process: "
        f"{outcome.status.value}, {outcome.records_durable:,} durable, "
        f"{outcome.state_streams_committed} checkpoint committed"
    )
    print(f"  start to outcome                         {elapsed:8.1f} s ({records / elapsed:,.0f} records/s)")
    print(f"  history events of the run's workflow     {run.events:8d}")
    print(f"  worker peak RSS (sampled every 50 ms)    {run.peak_mb:8.0f} MB")
    print(f"  {CpuMeter.describe(run.used)}")
    rates, last_t = print_tenths(run.samples, records)
    if run.inferred:
        print("  the last checkpoint fell between two polls: the last tenth is timed to the outcome")
    else:
        print(f"  after the last record was durable (commit, finish): {elapsed - last_t:.1f} s")
    steady = rates[1:]
    spread = (max(steady) - min(steady)) / statistics.median(steady)
    print(
        f"long: records={records} every={run.every} elapsed_s={elapsed:.1f} "
        f"records_per_s={records / elapsed:.0f} history_events={run.events} peak_rss_mb={run.peak_mb:.0f} "
        f"tenths_rps={','.join(f'{r:.0f}' for r in rates)} spread_after_first={spread:.2f}"
    )


def print_tenths(samples: list[Sample], records: int) -> tuple[list[float], float]:
    """A line per tenth of the records: when it was durable and at what rate; returns the rates
    and when the last record was durable."""
    print("  tenth  records durable by  at (s)  records/s in the tenth  worker RSS then (MB)")
    rates = []
    prev_t = 0.0
    for k in range(1, 11):
        target = records * k // 10
        t, rss = crossing(samples, target)
        rate = (target - records * (k - 1) // 10) / (t - prev_t) if t > prev_t else float("inf")
        rates.append(rate)
        print(f"  {k:>5}  {target:>18,}  {t:6.1f}  {rate:>22,.0f}  {rss / (1 << 20):>20.0f}")
        prev_t = t
    return rates, prev_t
