"""OpenTelemetry traces and metrics, and structured logs. Off unless `PDPP_OTEL` is set.

`PDPP_OTEL=otlp` (or `1`) exports traces and metrics over OTLP/gRPC, configured by the standard
`OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, …), and Temporal's own
SDK metrics to the same endpoint. `PDPP_OTEL=console` prints spans and metrics to stderr, for
local debugging. Instruments are module-level and cost next to nothing while telemetry is off.

Attributes are counts, sizes, names of connectors and streams and our own ids: never record
content, cursors or secrets.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace

tracer = trace.get_tracer("pdpp_orch")
meter = metrics.get_meter("pdpp_orch")

records_durable = meter.create_counter(
    "pdpp.records.durable", unit="{record}", description="records made durable"
)
records_rejected = meter.create_counter(
    "pdpp.records.rejected", unit="{record}", description="records rejected"
)
skips = meter.create_counter("pdpp.skips", unit="{item}", description="items skipped, by reason")
gaps_open = meter.create_gauge("pdpp.gaps.open", unit="{gap}", description="open gaps, by recovery class")
run_duration = meter.create_histogram("pdpp.run.duration", unit="s", description="start to outcome of a run")
flush_latency = meter.create_histogram(
    "pdpp.flush.latency", unit="s", description="one batch into PostgreSQL"
)
rows_per_second = meter.create_histogram(
    "pdpp.flush.rows_per_second", unit="{record}/s", description="per batch"
)
budget_units = meter.create_counter(
    "pdpp.budget.units", unit="{unit}", description="budget units granted or charged"
)

# The run and connector (and stream, where known) of what is being done, for every log line.
log_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "pdpp_log_context", default=()
)


@dataclass
class Telemetry:
    """What `setup` turned on: interceptors for the Temporal client, a runtime for its metrics."""

    interceptors: list[Any] = field(default_factory=list)
    runtime: Any = None
    providers: list[Any] = field(default_factory=list)

    def shutdown(self) -> None:
        for p in self.providers:
            p.shutdown()


_active: Telemetry | None = None


def setup() -> Telemetry:
    """Turn telemetry on as `PDPP_OTEL` says (once per process); an empty Telemetry when off."""
    global _active
    if _active is not None:
        return _active
    mode = os.environ.get("PDPP_OTEL", "").strip().lower()
    if mode in ("", "0", "off", "false"):
        _active = Telemetry(runtime=temporal_runtime(None))
        return _active
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from temporalio.contrib.opentelemetry import TracingInterceptor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "pdpp-orchestrator")})
    runtime = temporal_runtime(None)
    if mode == "console":
        # stderr: stdout carries the commands' own output (`--json`).
        span_exporter: Any = ConsoleSpanExporter(out=sys.stderr)
        metric_exporter: Any = ConsoleMetricExporter(out=sys.stderr)
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from temporalio.runtime import OpenTelemetryConfig

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
        runtime = temporal_runtime(OpenTelemetryConfig(url=endpoint))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _active = Telemetry([TracingInterceptor()], runtime, [tracer_provider, meter_provider])
    return _active


def temporal_runtime(metrics: Any) -> Any:
    """The Temporal runtime of the CLI and the workers: its core's own errors go through Python
    logging to stderr, never to stdout, which carries the commands' output (`--json`). (Its
    retry warnings are left out: the CLI says itself when the server is out of reach.)"""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

    logging_config = LoggingConfig(
        filter="ERROR", forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    )
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


def shutdown() -> None:
    """Flush and stop the exporters, if telemetry is on."""
    if _active is not None:
        _active.shutdown()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span with the given attributes (None values left out)."""
    with tracer.start_as_current_span(
        name, attributes={k: v for k, v in attributes.items() if v is not None}
    ) as s:
        yield s


@contextmanager
def context(**fields: str) -> Iterator[None]:
    """Add fields (run_id, connector, stream) to every log line written inside."""
    token = log_context.set(tuple({**dict(log_context.get()), **fields}.items()))
    try:
        yield
    finally:
        log_context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.pdpp = dict(log_context.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the run's context."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "pdpp", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(f"{k}={v}" for k, v in getattr(record, "pdpp", {}).items())
        return super().format(record) + (f" [{ctx}]" if ctx else "")


def configure_logging(level: str, fmt: str = "text") -> None:
    """Root logging: `fmt` "json" for log shippers, "text" otherwise; both carry the context."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
