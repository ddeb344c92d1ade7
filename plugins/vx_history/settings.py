"""``[tool.vx.history]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HistorySettings(BaseModel):
    """Recording, retention, scheduling and end-of-run checks of the run history."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Record runs (false: no recording, no priorities, no end-of-run lines)."""
    keep_runs: int = Field(default=200, ge=1)
    """Keep the newest N runs."""
    keep_days: float = Field(default=30, gt=0)
    """Drop runs older than this many days."""
    scheduling: bool = True
    """Order ready tasks by their expected remaining critical path from history."""
    window: int = Field(default=20, ge=1)
    """Executions per task (newest) the scheduler and the regression check look at."""
    regression_ratio: float = Field(default=2.0, gt=1)
    """A task is slow when it took more than this times its p50 ..."""
    regression_min_samples: int = Field(default=5, ge=1)
    """... with at least this many earlier executions ..."""
    regression_min_seconds: float = Field(default=1.0, ge=0)
    """... at least this many seconds more than its p50, and longer than its p99."""
    lock_timeout: float = Field(default=5.0, ge=0)
    """Seconds a run waits for another vx process's write before giving up (one warning)."""
    flaky: bool = True
    """List tasks whose key both passed and failed at the end of runs that executed them."""
