"""Diagnostics on stderr through structlog, configured on first use (it is slow to import)."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

_VERBOSITY = 0
_warned: set[str] = set()
_logger: Any = None


def set_verbosity(level: int) -> None:
    """``-q`` gives -1 (errors only), ``-v`` 1 (info), ``-vv`` 2 (debug)."""
    global _VERBOSITY, _logger
    _VERBOSITY = level
    _logger = None


def _render(_: Any, method: str, event: MutableMapping[str, Any]) -> str:
    message = event.pop("event")
    extra = " ".join(f"{key}={value}" for key, value in event.items() if key != "level")
    level = "" if method == "info" else f"{method}: "
    return f"vx: {level}{message}" + (f" ({extra})" if extra else "")


class _Stderr:
    """Writes to whatever ``sys.stderr`` is now (tests swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def get_logger() -> Any:
    global _logger
    if _logger is None:
        import logging

        import structlog

        levels = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}
        _logger = structlog.wrap_logger(
            structlog.PrintLogger(_Stderr()),  # type: ignore[arg-type]
            processors=[structlog.processors.add_log_level, _render],
            wrapper_class=structlog.make_filtering_bound_logger(
                levels.get(_VERBOSITY, logging.DEBUG if _VERBOSITY > 1 else logging.ERROR)
            ),
            cache_logger_on_first_use=False,
        )
    return _logger


def warning(message: str, *, once: bool = True, **fields: Any) -> None:
    """Print ``vx: warning: message``; with ``once``, each message only once per process."""
    if once:
        if message in _warned:
            return
        _warned.add(message)
    get_logger().warning(message, **fields)
