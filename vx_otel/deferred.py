"""The ``otel.exporter`` plugin object: registered when export is enabled, it imports the
OpenTelemetry SDK and builds the exporter and the resource (``git`` calls for ``vcs.*``) in a
background thread, so that this work overlaps with planning and hashing instead of adding to
the run; the first event waits for it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import vx
from vx_otel.options import ExportOptions

if TYPE_CHECKING:
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
    from vx_otel.tracing import RunExporter

__all__ = ["DeferredExporter", "missing_module"]


def missing_module(options: ExportOptions) -> str | None:
    """The first module export needs that cannot be found (without importing it), or None."""
    exporter = "grpc" if options.protocol == "grpc" else "http"
    for name in ("opentelemetry.sdk.trace", f"opentelemetry.exporter.otlp.proto.{exporter}"):
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ImportError:  # a parent package is missing or is not a package
            return name
    return None


class DeferredExporter:
    """Forwards vx's events to a :class:`~vx_otel.tracing.RunExporter` once it is built."""

    def __init__(self, options: ExportOptions, root: Path) -> None:
        self.options = options
        self.root = root
        self.exporter: RunExporter | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, name="vx-otel-import", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            from vx_otel.tracing import RunExporter

            self.exporter = RunExporter(self.options, self.root)
        except Exception as exc:
            self._error = exc

    @vx.hookimpl
    def vx_run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        self._thread.join()
        if self._error is not None:
            vx.warning(
                f"otel: export disabled for this run, the exporter could not be created: "
                f"{type(self._error).__name__}: {self._error}",
                once=False,
            )
        elif self.exporter is not None:
            self.exporter.vx_run_start(run, graph, config)

    @vx.hookimpl
    def vx_task_start(self, task: Task, run: RunInfo) -> None:
        if self.exporter is not None:
            self.exporter.vx_task_start(task, run)

    @vx.hookimpl
    def vx_task_cache(self, task: Task, status: CacheStatus, details: CacheResult) -> None:
        if self.exporter is not None:
            self.exporter.vx_task_cache(task, status, details)

    @vx.hookimpl
    def vx_wrap_command(self, task: Task, spec: CommandSpec, config: Config) -> CommandSpec | None:
        """Not an observer hook (an exception there would fail the run): a task whose trace
        context cannot be injected just runs without it."""
        if self.exporter is None:
            return None
        try:
            return self.exporter.vx_wrap_command(task, spec, config)
        except Exception as exc:
            vx.warning(f"otel: no TRACEPARENT for tasks: {type(exc).__name__}: {exc}")
            return None

    @vx.hookimpl
    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        if self.exporter is not None:
            self.exporter.vx_task_finish(result, run)

    @vx.hookimpl
    def vx_cache_upload(
        self, task: Task, layer: str, key: str, duration_ms: float, error: str | None
    ) -> None:
        if self.exporter is not None:
            self.exporter.vx_cache_upload(task, layer, key, duration_ms, error)

    @vx.hookimpl
    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        if self.exporter is not None:
            self.exporter.vx_run_finish(run, config)
