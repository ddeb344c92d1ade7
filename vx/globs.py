"""Gitignore-style globs (``inputs``, ``outputs``, ``global_inputs``), matched fast.

The common shapes (``dist/**``, ``src/``, ``pyproject.toml``, ``docs/index.md``, their
``!`` negations and a leading ``/`` or ``**/``) are matched with string operations; any other
pattern makes the whole set fall back to pathspec's gitignore implementation. Both give the
same answers (``tests/test_globs.py`` checks them against each other).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

__all__ = ["GlobSet", "globs"]

_SPECIAL = frozenset("*?[]\\")


def _rule(pattern: str) -> tuple[bool, str, str] | None:
    """``(negated, kind, value)`` for a simple pattern, None when pathspec is needed."""
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    if not body or body.startswith("#") or body != body.strip():
        return None
    anchored = body.startswith("/")
    body = body.lstrip("/") if anchored else body
    if body.startswith("**/") and not anchored:
        body = body[3:]
    if body.endswith("/**"):
        head = body[:-3]
        if not head or _SPECIAL & set(head):
            return None
        return negated, "under", head.strip("/") + "/"
    if body.endswith("/") and "/" not in body[:-1]:
        head = body[:-1]
        if not head or _SPECIAL & set(head) or anchored:
            return None
        return negated, "dir", head
    if not body or _SPECIAL & set(body) or body.endswith("/"):
        return None
    if "/" in body or anchored:
        return negated, "path", body
    return negated, "name", body


class GlobSet:
    """A list of gitignore-style patterns; the last pattern that matches decides."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        rules = [_rule(p) for p in patterns]
        self._rules: list[tuple[bool, str, str]] | None = None
        self._spec: Any = None
        if all(rule is not None for rule in rules):
            self._rules = [rule for rule in rules if rule is not None]
        else:
            import pathspec

            self._spec = pathspec.PathSpec.from_lines("gitignore", patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, path: str) -> bool:
        """Whether the POSIX relative file ``path`` matches."""
        if self._rules is None:
            return bool(self._spec.match_file(path))
        matched = False
        for negated, kind, value in self._rules:
            if kind == "under":
                hit = path.startswith(value)
            elif kind == "path":
                hit = path == value or path.startswith(value + "/")
            elif kind == "name":
                hit = f"/{value}/" in f"/{path}/"
            else:  # "dir": a directory of that name at any depth
                hit = f"/{value}/" in f"/{path}"
            if hit:
                matched = not negated
        return matched

    def filter(self, paths: Iterable[str]) -> list[str]:
        return [path for path in paths if self.match(path)]


@functools.lru_cache(maxsize=1024)
def _cached(patterns: tuple[str, ...]) -> GlobSet:
    return GlobSet(patterns)


def globs(patterns: Iterable[str]) -> GlobSet:
    """A (cached) :class:`GlobSet` for ``patterns``."""
    return _cached(tuple(patterns))
