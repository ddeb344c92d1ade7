"""Spans from vx's run events, exported over OTLP in the background (imported only when enabled).

One trace per run: a ``RUN vx run <tasks>`` span (kind SERVER) and one child span per task,
named by its id, with the OpenTelemetry CI/CD semantic-convention attributes. A run fed by
``vx replay`` is exported with its recorded times (``vx.replay`` set on the run span). Spans are
queued to a batch processor as they end and sent by its worker thread; at the end of the run
vx waits at most ``flush_timeout`` seconds for what is left. Export problems are collected and
reported once, as a warning naming the endpoint; they never change the run's result.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import vx
from vx_otel.options import ExportOptions

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from vx import (
        CacheResult,
        CacheStatus,
        CommandSpec,
        Config,
        RunInfo,
        Task,
        TaskGraph,
        TaskResult,
    )

__all__ = ["RunExporter", "exporter_for"]

#: ``cicd.pipeline.task.run.result`` / ``cicd.pipeline.result`` for each vx task status.
_RESULTS = {
    "success": "success",
    "cached": "success",
    "flaky": "success",
    "failed": "failure",
    "skipped": "skip",
    "cancelled": "cancellation",
}
#: Task names that map onto ``cicd.pipeline.task.type`` values.
_TASK_TYPES = frozenset({"build", "test", "deploy"})


def exporter_for(options: ExportOptions) -> SpanExporter:
    """The OTLP span exporter for ``options.protocol`` (gRPC is imported only when asked)."""
    if options.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=options.endpoint,
            insecure=options.endpoint.startswith("http://"),
            headers=tuple(options.headers.items()) or None,
            timeout=options.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=options.endpoint, headers=options.headers or None, timeout=options.timeout
    )


class _Problems(logging.Handler):
    """Keeps the last error the OTLP exporters logged (they report failures only as logs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None
        self.transient: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("opentelemetry.exporter"):
            return
        if record.levelno >= logging.ERROR:
            self.last = record.getMessage()
        elif (message := record.getMessage()).startswith("Transient error "):
            # "Transient error <cause> encountered while exporting ..., retrying in 1.0s.
            # [Error details: <details>]" (HTTP and gRPC exporters): keep cause and details.
            cause = message.removeprefix("Transient error ").split(" encountered while")[0]
            details = message.partition("Error details: ")[2]
            self.transient = f"{cause}: {details}" if details else cause


class _Watched(SpanExporter):
    """Delegates to the OTLP exporter and remembers the first failure."""

    def __init__(self, inner: SpanExporter, problems: _Problems) -> None:
        self.inner = inner
        self.problems = problems
        self.failure: str | None = None
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            self.problems.last = f"{type(exc).__name__}: {exc}"
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        elif self.failure is None:
            self.failure = self.problems.last or "the collector did not accept the spans"
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _quiet_sdk_logs(handler: logging.Handler) -> None:
    """OpenTelemetry logs export failures (with tracebacks) on every batch; vx says it once."""
    logger = logging.getLogger("opentelemetry")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING)


def _redact(url: str) -> str:
    """``url`` without credentials, query or fragment (safe to print or export)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _git(root: Path, *args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = completed.stdout.strip()
    return value if completed.returncode == 0 and value else None


def vcs_attributes(root: Path) -> dict[str, str]:
    """``vcs.*`` resource attributes of the git checkout at ``root`` (empty outside git)."""
    head = _git(root, "rev-parse", "HEAD", "--abbrev-ref", "HEAD")
    if head is None:
        return {}
    revision, _, ref = head.partition("\n")
    attributes = {"vcs.ref.head.revision": revision}
    if ref and ref != "HEAD":
        attributes["vcs.ref.head.name"] = ref
        attributes["vcs.ref.head.type"] = "branch"
    remote = _git(root, "config", "--get", "remote.origin.url")
    if remote:
        url = _redact(remote) if "://" in remote else remote
        attributes["vcs.repository.url.full"] = url
        name = url.rstrip("/").rpartition("/")[2].removesuffix(".git")
        if name:
            attributes["vcs.repository.name"] = name
    return attributes


def _resource(options: ExportOptions, root: Path) -> Resource:
    attributes: dict[str, Any] = {
        "service.version": vx.__version__,
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
        "os.type": sys.platform,
        "process.pid": os.getpid(),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        **vcs_attributes(root),
    }
    if options.service_name:
        attributes["service.name"] = options.service_name
    resource = Resource.create(attributes)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "vx"}))
    return resource


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _ms_ns(milliseconds: float) -> int:
    return int(milliseconds * 1e6)


class RunExporter:
    """Builds one run's trace from vx's events; the registered plugin that calls it is
    :class:`~vx_otel.deferred.DeferredExporter`."""

    def __init__(self, options: ExportOptions, root: Path) -> None:
        self.options = options
        self.resource = _resource(options, root)
        self.endpoint = _redact(options.endpoint)
        self.problems = _Problems()
        _quiet_sdk_logs(self.problems)
        self.exporter = _Watched(exporter_for(options), self.problems)
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None
        self.run_span: trace.Span | None = None
        self.run_context: Context | None = None
        self.spans: dict[str, trace.Span] = {}
        self.contexts: dict[str, trace.SpanContext] = {}
        self.replay = False
        #: On a replay: each task's cache answer, kept until its span is made at its finish.
        self._replayed_cache: dict[str, tuple[CacheStatus, CacheResult]] = {}
        #: On a replay: the latest recorded end so far (ns), where unstarted tasks are put.
        self._reached = 0

    # -- the run -------------------------------------------------------------------

    def vx_run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        if self.provider is not None:  # another run of this process (vx watch): a new trace
            self.problems.last = self.problems.transient = None
            self.exporter = _Watched(exporter_for(self.options), self.problems)
            self.spans.clear()
            self.contexts.clear()
            self._replayed_cache.clear()
        self.provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("vx_otel", vx.__version__)
        pipeline = " ".join(["vx", "run", *run.task_names])
        self.replay = run.replay
        self._reached = _ns(run.started_at)
        # vx started by an instrumented parent (a CI job, a script): the run nests under it.
        # A replay's parent is whatever started the original run, which was not recorded.
        parent = TraceContextTextMapPropagator().extract(
            {
                key.lower(): value
                for key in ("TRACEPARENT", "TRACESTATE")
                if not run.replay and (value := os.environ.get(key))
            }
        )
        self.run_span = self.tracer.start_span(
            f"RUN {pipeline}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=_ns(run.started_at),
            attributes={
                "cicd.pipeline.name": pipeline,
                "cicd.pipeline.action.name": "RUN",
                "cicd.pipeline.run.id": run.run_id,
                "vx.version": vx.__version__,
                "vx.concurrency": run.concurrency or 0,
                "vx.tasks.total": len(run.tasks),
                "vx.workspace.root": str(graph.workspace.root),
                "vx.replay": run.replay,
            },
        )
        self.run_context = trace.set_span_in_context(self.run_span)

    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        span = self.run_span
        if span is None:
            return
        counts = {status: 0 for status in _RESULTS}
        hits = 0
        for result in run.results.values():
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
            hits += result.cache.status == "hit"
        if run.interrupted:
            outcome = "cancellation"
        elif counts["failed"]:
            outcome = "failure"
        else:
            outcome = "success"
        attributes: dict[str, Any] = {
            "cicd.pipeline.result": outcome,
            "vx.exit_code": run.exit_code if run.exit_code is not None else -1,
            "vx.interrupted": run.interrupted,
            "vx.cache.hits": hits,
            **{f"vx.tasks.{status}": count for status, count in counts.items()},
        }
        span.set_attributes(attributes)
        if outcome == "failure":
            span.set_attribute("error.type", "task_failure")
            span.set_status(Status(StatusCode.ERROR, f"{counts['failed']} task(s) failed"))
        elif run.interrupted:
            span.set_attribute("error.type", "interrupted")
            span.set_status(Status(StatusCode.ERROR, "interrupted"))
        end = None
        if run.replay:  # the recorded end (a record cut short: the latest task end)
            recorded = run.duration_ms
            end = self._reached if recorded is None else _ns(run.started_at) + _ms_ns(recorded)
        span.end(end_time=end)
        self._flush()

    def _flush(self) -> None:
        """Send what is left, waiting at most ``flush_timeout``; then report problems once."""
        provider = self.provider
        if provider is None:
            return
        done = threading.Event()

        def finish() -> None:
            try:
                provider.shutdown()  # flushes the batch processor, then closes the exporter
            finally:
                done.set()

        worker = threading.Thread(target=finish, name="vx-otel-flush", daemon=True)
        worker.start()
        timeout = self.options.flush_timeout
        if not done.wait(timeout):
            if timeout == 0:
                return  # asked never to wait: unsent spans are dropped silently
            cause = self.problems.last or self.problems.transient
            vx.warning(
                f"otel: the trace was not fully sent to {self.endpoint} within {timeout:g}s "
                "(flush_timeout)"
                + (f" (last error: {cause[:300]})" if cause else "")
                + "; the rest is dropped, the run is not affected",
                once=False,
            )
            return
        if self.exporter.failure is not None:
            vx.warning(
                f"otel: could not export the trace to {self.endpoint}: "
                f"{self.exporter.failure[:300]}; the run is not affected",
                once=False,
            )

    # -- tasks -----------------------------------------------------------------------

    def _start(self, task: Task, run: RunInfo, start_time: int | None = None) -> trace.Span:
        assert self.tracer is not None
        links = [Link(self.contexts[d]) for d in task.dependencies if d in self.contexts]
        attributes: dict[str, Any] = {
            "cicd.pipeline.task.name": task.id,
            "cicd.pipeline.task.run.id": f"{run.run_id}/{task.id}",
            "vx.project": task.project.name,
            "vx.task": task.name,
            "vx.task.dependencies": list(task.dependencies),
        }
        if task.name in _TASK_TYPES:
            attributes["cicd.pipeline.task.type"] = task.name
        if task.hash:
            attributes["vx.task.key"] = task.hash
        if self.options.export_commands and task.command is not None:
            command = task.command
            attributes["vx.task.command"] = command if isinstance(command, str) else list(command)
        span = self.tracer.start_span(
            task.id,
            context=self.run_context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=start_time,
        )
        self.spans[task.id] = span
        self.contexts[task.id] = span.get_span_context()
        return span

    def vx_task_start(self, task: Task, run: RunInfo) -> None:
        if not run.replay:  # a replayed task's span is made at its finish, with its times
            self._start(task, run)

    def vx_task_cache(self, task: Task, status: CacheStatus, details: CacheResult) -> None:
        if self.replay:
            self._replayed_cache[task.id] = (status, details)
            return
        span = self.spans.get(task.id)
        if span is not None:
            self._describe_cache(span, status, details, None)

    def _describe_cache(
        self, span: trace.Span, status: CacheStatus, details: CacheResult, at: int | None
    ) -> None:
        """The cache answer on the task span (events at ``at``, or now when None)."""
        span.set_attribute("vx.cache.status", str(status))
        if details.layer is not None:
            span.set_attribute("vx.cache.source", details.layer)
        lookup = details.lookup_ms
        if lookup is not None:
            event: dict[str, Any] = {
                "vx.cache.status": status,
                "vx.duration_ms": round(float(lookup), 3),
            }
            span.add_event("vx.cache.lookup", event, timestamp=at)
        restore = details.restore_ms
        if restore is not None:
            attributes = {"vx.duration_ms": round(float(restore), 3)}
            span.add_event("vx.cache.restore", attributes, timestamp=at)
        saved = details.time_saved_ms
        if saved is not None:
            span.set_attribute("vx.cache.time_saved_ms", float(saved))

    def vx_wrap_command(self, task: Task, spec: CommandSpec, config: Config) -> CommandSpec | None:
        """``TRACEPARENT``/``TRACESTATE`` for the task's process (after its key is computed,
        so a new trace id never changes a key)."""
        context = self.contexts.get(task.id)
        if context is None or not context.is_valid:
            return None
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(
            carrier, context=trace.set_span_in_context(trace.NonRecordingSpan(context))
        )
        env = dict(spec.env)
        env.pop("TRACESTATE", None)
        for key, value in carrier.items():
            env[key.upper()] = value
        return dataclasses.replace(spec, env=env)  # keeps what other wrappers set

    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        task = result.task
        start = end = None
        if run.replay:
            start, end = self._recorded_times(result, run)
            span = self._start(task, run, start_time=start)
            self.spans.pop(task.id, None)
            cached = self._replayed_cache.pop(task.id, None)
            if cached is not None:
                self._describe_cache(span, *cached, at=start)
        elif (started := self.spans.pop(task.id, None)) is not None:
            span = started
        else:  # skipped: never started
            span = self._start(task, run)
            self.spans.pop(task.id, None)
        status = result.status.value
        cache = result.cache
        span.set_attributes(
            {
                "cicd.pipeline.task.run.result": _RESULTS.get(status, status),
                "vx.task.status": status,
                "vx.cache.status": str(cache.status),
                "process.exit.code": result.exit_code,
                "vx.duration_ms": round(result.duration_ms, 3),
                "vx.task.attempts": result.attempts,
            }
        )
        save = cache.save_ms
        if save is not None:
            attributes = {"vx.duration_ms": round(float(save), 3)}
            span.add_event("vx.cache.save", attributes, timestamp=end)
        if status == "failed":
            span.set_attribute("error.type", str(result.exit_code))
            span.set_status(Status(StatusCode.ERROR, f"exit code {result.exit_code}"))
            tail = self.options.log_tail
            if tail and result.output:
                text = result.output[-tail:].decode("utf-8", "replace")
                span.add_event("vx.task.log", {"vx.log.tail": text}, timestamp=end)
        span.end(end_time=end)

    def _recorded_times(self, result: TaskResult, run: RunInfo) -> tuple[int, int]:
        """A replayed task's start and end (ns) from the record; a task that never started
        (skipped, cancelled) is an instant at the latest end recorded before it."""
        if result.start_ms is None:
            return self._reached, self._reached
        start = _ns(run.started_at) + _ms_ns(result.start_ms)
        end = start + _ms_ns(result.duration_ms)
        self._reached = max(self._reached, end)
        return start, end

    def vx_cache_upload(
        self, task: Task, layer: str, key: str, duration_ms: float, error: str | None
    ) -> None:
        """A child span of the task's span for each background upload (it may end after it)."""
        parent = self.contexts.get(task.id)
        if parent is None or self.tracer is None:
            return
        end = time.time_ns()
        attributes: dict[str, Any] = {
            "vx.cache.layer": layer,
            "vx.task.key": key,
            "vx.duration_ms": round(duration_ms, 3),
        }
        span = self.tracer.start_span(
            f"vx.cache.upload {layer}",
            context=trace.set_span_in_context(trace.NonRecordingSpan(parent)),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=end - int(duration_ms * 1e6),
        )
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end)
