"""``[tool.vx.dask]``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DaskSettings(BaseModel):
    """Where the Dask scheduler is and how vx uses the cluster."""

    model_config = ConfigDict(extra="forbid")

    scheduler: str | None = None
    """Scheduler address (``tcp://host:8786``, ``dask://host:8786`` or ``host:8786``); set it
    to run every ``vx run`` on the cluster (``--executor`` overrides it)."""
    retries: int = Field(default=1, ge=0)
    """Times a task is run again after the worker running it died (not after it failed)."""
    outputs: Literal["all", "requested"] = "all"
    """Which outputs the client restores into its checkout after a task ran remotely: every
    task's, or only those of the tasks named on the command line."""
    concurrency: int = Field(default=1000, ge=1)
    """Tasks kept in flight on the cluster when ``-j`` / ``[tool.vx] concurrency`` are unset
    (the scheduler places them; it is not this machine's CPU count)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds allowed to reach the scheduler."""
