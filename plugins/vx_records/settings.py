"""``[tool.vx.records]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RecordsSettings(BaseModel):
    """What is kept of each run's event record in the run store."""

    model_config = ConfigDict(extra="forbid")

    store: bool = True
    """Store each run's event record with the run (needs the ``history`` plugin enabled;
    retention is the history's ``keep_runs`` / ``keep_days``)."""
    max_task_output: int = Field(default=1 << 20, ge=0)
    """Bytes of each task's output kept in the stored record (the rest is dropped, and
    the task's ``task_finish`` event says how much); the ``--events`` stream is not cut."""
