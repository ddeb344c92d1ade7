"""The fast glob matcher agrees with pathspec's gitignore semantics."""

from __future__ import annotations

import itertools

import pathspec
import pytest

from vx.globs import GlobSet

PATTERNS = [
    "dist/**", "/dist/**", "src/**", "**/src", "src/", "dist/", "pyproject.toml", "src/a.py",
    "/README.md", "a/b/**", "!dist/keep/**", "!src/gen/**", "!pyproject.toml", "tests",
    "build/", "x.txt", "**/x.txt", "docs/index.md",
    # not simple: must fall back and still agree
    "*.py", "src/**/*.py", "dist/*.whl", "a?c", "[ab].txt", "**", "!*.pyc",
]
PATHS = [
    "dist/a", "dist/keep/x", "dist", "src/a.py", "src/gen/x.py", "src/b/c.py", "pkg/src/a.py",
    "pyproject.toml", "sub/pyproject.toml", "README.md", "docs/README.md", "a/b/c", "a/b",
    "tests/t.py", "x/tests/y", "tests", "build/x", "y/build/z", "x.txt", "d/x.txt",
    "docs/index.md", "docs/index.md.bak", "distx/a", "srcs/a", "abc", "a.txt", "p.pyc",
    "deep/dist/a",
]


def _expected(patterns: tuple[str, ...], path: str) -> bool:
    return bool(pathspec.PathSpec.from_lines("gitignore", patterns).match_file(path))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_single_patterns_agree_with_pathspec(pattern: str) -> None:
    globset = GlobSet((pattern,))
    for path in PATHS:
        assert globset.match(path) == _expected((pattern,), path), (pattern, path)


def test_pattern_lists_agree_with_pathspec() -> None:
    for first, second in itertools.permutations(PATTERNS[:18], 2):
        patterns = (first, second)
        globset = GlobSet(patterns)
        for path in PATHS:
            assert globset.match(path) == _expected(patterns, path), (patterns, path)


def test_simple_patterns_do_not_need_pathspec() -> None:
    assert GlobSet(("dist/**", "!dist/keep/**", "pyproject.toml"))._spec is None
    assert GlobSet(("src/**/*.py",))._spec is not None
