"""The live progress display of ``vx run`` on a terminal (tasks done/total, running tasks),
drawn by rich. Imported only when a run on a TTY has something to execute, so ``vx --help``
and warm full hits never import rich."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["LiveProgress"]

_SHOWN_RUNNING = 3


class LiveProgress:
    """One progress bar below the streamed output: ``━━━━━━━ 3/10 · running a#build, ...``.
    Lines written to ``sys.stdout``/``sys.stderr`` while it is shown are printed above it;
    :meth:`stop` removes it (the run summary follows as plain text)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress: Progress = Progress(
            SpinnerColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(file=sys.stdout),
            transient=True,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._task: Any = self._progress.add_task("", total=total)
        self._running: dict[str, None] = {}
        self._done = 0
        self._progress.start()

    def started(self, task_id: str) -> None:
        self._running[task_id] = None
        self._update()

    def finished(self, task_id: str) -> None:
        self._running.pop(task_id, None)
        self._done += 1
        self._update()

    def _update(self) -> None:
        names = list(self._running)
        shown = ", ".join(names[:_SHOWN_RUNNING])
        if len(names) > _SHOWN_RUNNING:
            shown += f" (+{len(names) - _SHOWN_RUNNING} more)"
        description = f"running: {shown}" if shown else ""
        self._progress.update(self._task, completed=self._done, description=description)
        self._progress.refresh()  # redraw now: lines printed above reuse the last drawing

    def stop(self) -> None:
        self._progress.stop()
