"""The ``[tool.vx.hello]`` settings model (imported only when settings are validated)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HelloSettings(BaseModel):
    """``[tool.vx.hello]``; each key can be overridden with ``VX_HELLO__<KEY>``."""

    # extra="forbid": a misspelled key is an error with a "did you mean" hint.
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Set to false to turn the greeter off for this workspace."""
    greeting: str = Field(default="hello", min_length=1)
    """Printed after each run; exported to tasks as ``HELLO_GREETING``."""
