"""``[tool.vx.sandbox]`` and the per-task ``sandbox`` key (imported only when validating)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

__all__ = ["Network", "SandboxSettings", "TaskSandbox"]

#: ``false``: no network; ``"loopback"``: a private loopback interface only; ``true``: all.
Network = StrictBool | Literal["loopback"]


class SandboxSettings(BaseModel):
    """``[tool.vx.sandbox]``: the workspace's sandbox policy."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "best-effort", "required"] | None = None
    """Default: ``best-effort`` when the table exists, else ``off``."""
    backend: Literal["auto", "landlock", "bwrap"] = "auto"
    read: list[str] = Field(default_factory=list)
    """Extra paths every task may read (absolute, or relative to the workspace root)."""
    write: list[str] = Field(default_factory=list)
    """Extra paths every task may write (absolute, or relative to the workspace root)."""
    network: Network = False
    """The network of every task unless its ``sandbox`` table says otherwise."""
    report: bool = True
    """Re-run a failed sandboxed task under ``strace`` to name the accesses it was denied."""


class TaskSandbox(BaseModel):
    """``sandbox = { ... }`` in ``[tool.vx.tasks.<name>]``; ``sandbox = false`` (short for
    ``{ enabled = false }``) opts the task out."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = True
    network: Network | None = None
    read: list[str] = Field(default_factory=list)
    """Extra paths this task may read (relative to its project, or absolute)."""
    write: list[str] = Field(default_factory=list)
    """Extra paths this task may write (relative to its project, or absolute)."""

    @model_validator(mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value
