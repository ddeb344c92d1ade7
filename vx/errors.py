"""Exceptions and exit codes.

Every error a user can cause is a :class:`VxError`; the CLI prints its message
(no traceback unless ``--debug``) and exits with its ``exit_code``::

    VxError                 base class, exit code 1
    ├── UsageError          bad command line (unknown task, bad --filter), exit code 2
    ├── ConfigError         bad pyproject.toml / settings / environment, exit code 78
    │   └── CycleError      the task graph has a dependency cycle
    └── PluginError         a plugin failed to import, is missing, or raised, exit code 78

Exit codes of ``vx run``: 0 when every selected task succeeded, otherwise the
highest task exit code (at least 1); 2 usage error; 78 configuration or plugin
error; 130 interrupted (SIGINT or SIGTERM); 70 internal error (a bug in vx).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigError",
    "CycleError",
    "PluginError",
    "UsageError",
    "VxError",
    "did_you_mean",
    "some_names",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130


class VxError(Exception):
    """An error caused by the user's input; printed without a traceback."""

    exit_code = 1


class UsageError(VxError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class ConfigError(VxError):
    """A configuration file, key or environment variable is invalid."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class CycleError(ConfigError):
    """The task graph contains a dependency cycle."""


class PluginError(VxError):
    """A plugin could not be loaded, is missing, or misbehaved."""

    exit_code = EXIT_CONFIG


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    import difflib

    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def some_names(names: list[str], limit: int = 12) -> str:
    """``a, b, c``, or ``a, b, ... (and 40 more)`` for long lists in messages."""
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... (and {len(names) - limit} more)"
