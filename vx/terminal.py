"""Built-in plugin ``terminal``: streams task output and prints the end-of-run summary.

``-p no:terminal`` silences it, like pytest's terminal reporter.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING

import vx
from vx.caching import CacheStatus
from vx.execution import TaskStatus

if TYPE_CHECKING:
    from vx.caching import CacheResult
    from vx.cli import Parser
    from vx.config import Config
    from vx.execution import RunInfo, TaskResult
    from vx.graph import Task, TaskGraph
    from vx.progress import LiveProgress

_COLORS = ("36", "35", "34", "33", "32", "96", "95", "94", "93", "92")


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--output-logs",
        choices=["full", "new-only", "errors-only", "none"],
        default="full",
        command=("run", "replay"),
        help="task output to show: full (default), new-only (not replayed "
        "cache hits), errors-only (only failed tasks), none",
    )
    parser.add_option(
        "--log-order",
        choices=["auto", "stream", "grouped"],
        default="auto",
        command=("run", "replay"),
        help="stream lines as they come, or group each task's "
        "output when it finishes (auto: grouped on GitHub Actions)",
    )
    parser.add_option(
        "--log-prefix",
        choices=["auto", "task", "none"],
        default="auto",
        command=("run", "replay"),
        help="prefix streamed lines with 'project#task: ' (auto: in stream order only)",
    )


@vx.hookimpl
def vx_configure(config: Config) -> None:
    if getattr(config.option, "output_logs", None) is not None:
        config.pluginmanager.register(TerminalReporter(config), "terminalreporter")


class _Output:
    """Writes to ``sys.stdout`` as it is now; a closed pipe (``vx run | head``) ends the
    output quietly instead of failing the reporter."""

    def __init__(self) -> None:
        self.broken = False

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                sys.stdout.write(text)
            except BrokenPipeError:
                self._broken()

    def flush(self) -> None:
        if not self.broken:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._broken()

    def _broken(self) -> None:
        self.broken = True
        # Python would report the broken pipe again when flushing stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


_OUTPUT = _Output()


class TerminalReporter:
    """Writes to ``sys.stdout`` as it is when each event arrives."""

    def __init__(self, config: Config) -> None:
        option = config.option
        self.verbosity = option.verbose - option.quiet
        self.output_logs: str = option.output_logs
        if self.verbosity < 0 and self.output_logs in ("full", "new-only"):
            self.output_logs = "errors-only"  # -q: only failures, and the final line
        self.started: float = config.started if config.started is not None else time.monotonic()
        github = os.environ.get("GITHUB_ACTIONS") == "true"
        self.github = github
        self.grouped = option.log_order == "grouped" or (option.log_order == "auto" and github)
        self.prefixed = option.log_prefix == "task" or (
            option.log_prefix == "auto" and not self.grouped
        )
        self.color = self._use_color()
        self.live = self._use_live_progress()
        self._partial: dict[str, bytes] = {}
        self._prefixes: dict[str, str] = {}
        self._replaying: set[str] = set()
        self._total = 0
        self._done = 0
        self._active: dict[str, None] = {}
        self._progress: LiveProgress | None = None

    @property
    def out(self) -> _Output:
        return _OUTPUT

    def _use_color(self) -> bool:
        if os.environ.get("NO_COLOR"):
            return False
        if os.environ.get("FORCE_COLOR"):
            return True
        return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"

    def _use_live_progress(self) -> bool:
        """A progress display on a terminal; plain lines for pipes, CI, ``NO_COLOR``,
        ``TERM=dumb``, ``-q`` and grouped logs."""
        if os.environ.get("NO_COLOR") or os.environ.get("CI") or self.grouped:
            return False
        if self.verbosity < 0 or os.environ.get("TERM") == "dumb":
            return False
        return sys.stdout.isatty()

    def _start_progress(self) -> None:
        """Show the progress display once something has to execute (never on a full hit,
        whose tasks complete before any runs: rich is not even imported then)."""
        if not self.live or self._progress is not None:
            return
        from vx.progress import LiveProgress

        self._progress = LiveProgress(self._total)
        for _ in range(self._done):
            self._progress.finished("")
        for task_id in self._active:
            self._progress.started(task_id)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            progress, self._progress = self._progress, None
            progress.stop()

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _prefix(self, task: Task) -> str:
        prefix = self._prefixes.get(task.id)
        if prefix is None:
            color = _COLORS[len(self._prefixes) % len(_COLORS)]
            prefix = self._paint(f"{task.id}: ", color) if self.prefixed else ""
            self._prefixes[task.id] = prefix
        return prefix

    def _streams(self, task: Task) -> bool:
        """Whether ``task``'s output is printed as it arrives."""
        if self.grouped or self.output_logs in ("none", "errors-only"):
            return False
        return not (self.output_logs == "new-only" and task.id in self._replaying)

    # -- events --------------------------------------------------------------

    @vx.hookimpl
    def vx_run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        self._total = len(graph)
        if self.verbosity >= 0:
            projects = len({graph[id].project.name for id in run.tasks})
            names = ", ".join(run.task_names)
            if run.replay:
                import time

                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
                self.out.write(self._paint(f"• replay of run {run.run_id} ({when})\n", "2"))
            self.out.write(
                self._paint(
                    f"• vx {vx.__version__}: running {names} — {len(run.tasks)} task(s) in "
                    f"{projects} project(s)\n",
                    "2",
                )
            )
            from vx.planning import inferred_scope

            scope = inferred_scope(config)
            if scope is not None:
                self.out.write(self._paint(scope_note(scope) + "\n", "2"))
            self.out.flush()

    @vx.hookimpl
    def vx_task_start(self, task: Task, run: RunInfo) -> None:
        self._active[task.id] = None
        if self._progress is not None:
            self._progress.started(task.id)

    @vx.hookimpl
    def vx_task_cache(self, task: Task, status: CacheStatus, details: CacheResult) -> None:
        verbose = self.verbosity > 0
        key = details.key or ""
        key = key if verbose else key[:16]
        if status == CacheStatus.HIT:
            self._replaying.add(task.id)
            source = f" ({details.get('layer') or details.get('source')})" if verbose else ""
            if self.output_logs == "full" and not self.grouped:
                self._line(task, self._paint(f"cache hit{source}, replaying logs {key}", "2"))
            elif self.output_logs == "new-only" and self.verbosity >= 0:
                message = f"cache hit{source}, suppressing logs {key}"
                self._line(task, self._paint(message, "2"))
            elif verbose:
                self._line(task, self._paint(f"cache hit{source} {key}", "2"))
            return
        self._start_progress()
        if (self._streams(task) and self.verbosity >= 0) or verbose:
            message = f"cache {status}, executing {key}".rstrip()
            reason = details.get("reason")
            if verbose and reason:
                message += f" ({reason})"
            self._line(task, self._paint(message, "2"))

    @vx.hookimpl
    def vx_task_output(self, task: Task, data: bytes) -> None:
        if not self._streams(task):
            return
        buffered = self._partial.pop(task.id, b"") + data
        *lines, rest = buffered.split(b"\n")
        if rest:
            self._partial[task.id] = rest
        if lines:
            prefix = self._prefix(task)
            text = "".join(f"{prefix}{line.decode(errors='replace')}\n" for line in lines)
            self.out.write(text)
            self.out.flush()

    @vx.hookimpl
    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        task = result.task
        self._done += 1
        if task.id in self._active:
            del self._active[task.id]
            if self._progress is not None:
                self._progress.finished(task.id)
        rest = self._partial.pop(task.id, b"")
        if rest:
            self.out.write(f"{self._prefix(task)}{rest.decode(errors='replace')}\n")
        status = result.status
        if status in (TaskStatus.SKIPPED,):
            return
        show_group = self.grouped and (
            self.output_logs == "full"
            or (self.output_logs == "new-only" and status != TaskStatus.CACHED)
            or (self.output_logs == "errors-only" and status == TaskStatus.FAILED)
        )
        errors_only = (
            not self.grouped and self.output_logs == "errors-only" and status == TaskStatus.FAILED
        )
        if show_group or errors_only:
            self._group(result)
        if status == TaskStatus.FAILED:
            took = _seconds(result.duration_ms)
            message = f"failed with exit code {result.exit_code} after {took}"
            if result.worker is not None:
                message += f" on {result.worker}"
            self._line(task, self._paint(message, "31;1"))
        elif status == TaskStatus.FLAKY:
            attempts = result.attempts
            message = f"flaky: failed {attempts - 1} time(s), passed on attempt {attempts}"
            self._line(task, self._paint(message, "33;1"))
        elif status == TaskStatus.CANCELLED and self.verbosity >= 0:
            self._line(task, self._paint("cancelled", "33"))
        if result.cache.uncached and self.verbosity >= 0:
            self._line(task, self._paint(f"not cached: {result.cache.uncached}", "33"))
        self.out.flush()

    def _group(self, result: TaskResult) -> None:
        task = result.task
        text = result.output.decode(errors="replace")
        if text and not text.endswith("\n"):
            text += "\n"
        if self.github:
            self.out.write(f"::group::{task.id}\n{text}::endgroup::\n")
            return
        self.out.write(self._paint(f"── {task.id} ", "1") + "\n")
        if self.prefixed:
            prefix = self._prefix(task)
            text = "".join(f"{prefix}{line}\n" for line in text.splitlines())
        self.out.write(text)

    def _line(self, task: Task, message: str) -> None:
        self.out.write(f"{self._prefix(task) or task.id + ': '}{message}\n")
        self.out.flush()

    @vx.hookimpl
    def vx_unconfigure(self, config: Config) -> None:
        self._stop_progress()  # also when the run ended with an error

    @vx.hookimpl(trylast=True)
    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        self._stop_progress()
        counts = {status: 0 for status in TaskStatus}
        for result in run.results.values():
            counts[result.status] += 1
        total = len(run.results)
        failed = [r.task.id for r in run.results.values() if r.status == TaskStatus.FAILED]
        flaky = [r.task.id for r in run.results.values() if r.status == TaskStatus.FLAKY]
        if run.replay:  # the original run's time, not the replay's
            elapsed = _seconds(run.duration_ms or 0.0)
        else:
            elapsed = _seconds((time.monotonic() - self.started) * 1000)
        out = self.out
        if self.verbosity < 0:
            self._final_line(run, counts, total, elapsed)
            return
        out.write("\n")
        successful = counts[TaskStatus.SUCCESS] + counts[TaskStatus.CACHED]
        parts = [f"{successful + counts[TaskStatus.FLAKY]} successful"]
        for status, label in (
            (TaskStatus.FLAKY, "flaky"),
            (TaskStatus.FAILED, "failed"),
            (TaskStatus.CANCELLED, "cancelled"),
            (TaskStatus.SKIPPED, "skipped"),
        ):
            if counts[status]:
                parts.append(f"{counts[status]} {label}")
        tasks_line = ", ".join(parts) + f", {total} total"
        color = "31;1" if failed or run.interrupted else "32;1"
        out.write(f" Tasks:    {self._paint(tasks_line, color)}\n")
        out.write(f" Cached:   {counts[TaskStatus.CACHED]} cached, {total} total\n")
        out.write(f" Time:     {elapsed}\n")
        if run.interrupted:
            out.write(f" {self._paint('Interrupted', '33;1')}: stopped by a signal\n")
        if failed:
            out.write(f" Failed:   {self._paint(', '.join(failed), '31')}\n")
        if flaky:
            out.write(f" Flaky:    {self._paint(', '.join(flaky), '33')} (passed on a retry)\n")
        if run.summary_path is not None:
            out.write(f" Summary:  {_display_path(run.summary_path)}\n")
        out.flush()

    def _final_line(
        self, run: RunInfo, counts: dict[TaskStatus, int], total: int, elapsed: str
    ) -> None:
        """``-q``: the whole summary on one line."""
        ok = counts[TaskStatus.SUCCESS] + counts[TaskStatus.CACHED] + counts[TaskStatus.FLAKY]
        parts = [f"{ok} successful"] + [
            f"{counts[status]} {status.value}"
            for status in (
                TaskStatus.FLAKY,
                TaskStatus.FAILED,
                TaskStatus.CANCELLED,
                TaskStatus.SKIPPED,
            )
            if counts[status]
        ]
        parts += [f"{total} total", f"{counts[TaskStatus.CACHED]} cached", elapsed]
        bad = counts[TaskStatus.FAILED] or run.interrupted
        line = "vx: " + ", ".join(parts) + (" (interrupted)" if run.interrupted else "")
        self.out.write(self._paint(line, "31;1" if bad else "32;1") + "\n")
        self.out.flush()


def scope_note(project: str) -> str:
    """The header line of a command scoped to the project it was started in."""
    return f"• scope: {project} (inferred from the current directory; -F '*' for the workspace)"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.2f}s" if ms < 60_000 else f"{int(ms // 60_000)}m{ms % 60_000 / 1000:.1f}s"


def _display_path(path: os.PathLike[str]) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return os.fspath(path)
