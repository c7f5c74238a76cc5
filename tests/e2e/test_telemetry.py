"""OpenTelemetry: the spans and metrics a run produces, and structured logs with context.

The SDK is pointed at in-memory exporters for this module (global providers can be set once
per process; nothing else in the suite reads them)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from pdpp_orch import telemetry
from pdpp_orch.models import RunStatus
from tests.conftest import Harness
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

SECRET = "telemetry-marker-31c"


@pytest.fixture(scope="module")
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield spans, reader


def sums(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    value = getattr(p, "value", None)
                    if value is None:
                        value = getattr(p, "count", 0)
                    out.setdefault(m.name, []).append((dict(p.attributes or {}), value))
    return out


async def test_a_run_is_traced_and_measured_without_its_data(
    harness: Harness, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    spans, reader = otel
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 30}},
            {"msg": {"type": "SKIP_RESULT", "stream": "a", "reason": "rate_limited", "message": SECRET,
                     "resource_ids": [SECRET]}},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )  # fmt: skip
    traced = Client(**{**harness.client.config(), "interceptors": [TracingInterceptor()]})
    harness.client = traced
    inp = harness.run_input(name)
    async with harness.worker():
        o = await traced.execute_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 30

    finished = [
        s for s in spans.get_finished_spans() if s.attributes and s.attributes.get("connector") == name
    ]
    by_name = {s.name: s for s in finished}
    assert {"pdpp.connector", "pdpp.flush", "pdpp.checkpoint.commit"} <= set(by_name)
    assert by_name["pdpp.connector"].attributes["records_durable"] == 30  # type: ignore[index]
    flushed = sum(int(s.attributes["rows"]) for s in finished if s.name == "pdpp.flush")  # type: ignore[index]
    assert flushed == 30
    assert by_name["pdpp.checkpoint.commit"].attributes["committed"] is True  # type: ignore[index]
    # Temporal's own spans, from the tracing interceptor on client and worker, share the trace.
    everything = spans.get_finished_spans()
    workflow_spans = [s for s in everything if s.name == "RunWorkflow:ConnectorRunWorkflow"]
    assert workflow_spans
    trace_ids = {s.context.trace_id for s in everything if s.name.startswith("StartWorkflow:")}
    assert by_name["pdpp.connector"].context.trace_id in trace_ids
    assert not any(SECRET in json.dumps(dict(s.attributes or {})) for s in everything)

    m = sums(reader)
    mine = {k: [(a, v) for a, v in pts if a.get("connector") == name] for k, pts in m.items()}
    assert sum(v for _, v in mine["pdpp.records.durable"]) == 30
    assert [(a["reason"], v) for a, v in mine["pdpp.skips"]] == [("rate_limited", 1)]
    assert [(a["recovery_class"], v) for a, v in mine["pdpp.gaps.open"]] == [("provider_pressure", 1)]
    assert mine["pdpp.run.duration"] and mine["pdpp.flush.latency"]


def test_log_lines_carry_the_run_connector_and_stream() -> None:
    stream = io.StringIO()
    telemetry.configure_logging("INFO", "json")
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        with telemetry.context(run_id="r-1", connector="gmail"), telemetry.context(stream="messages"):
            logging.getLogger("pdpp_orch.test").info("flushed %d records", 20_000)
        logging.getLogger("pdpp_orch.test").info("outside")
    finally:
        telemetry.configure_logging("WARNING")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "flushed 20000 records"
    assert (first["run_id"], first["connector"], first["stream"]) == ("r-1", "gmail", "messages")
    assert "run_id" not in second


async def test_console_exporter_prints_the_clients_spans(harness: Harness, pg_url: str) -> None:
    name = harness.scripted([{"records": {"stream": "a", "count": 1}}, {"state": "a"}, {"done": "succeeded"}])
    async with harness.worker():
        code, _, err = await cli(harness, pg_url, "run", name, "--wait", "--json", PDPP_OTEL="console")
    assert code == 0
    assert '"name": "StartWorkflow:ConnectorRunWorkflow"' in err
