"""The ``vx.testing`` pytest plugin itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vx.testing import LineMatcher, VxWorkspace, isolated_imports


def test_missing_pytest_names_the_extra() -> None:
    """Without pytest, importing vx.testing says which extra to install (one line, no
    traceback of vx's own)."""
    code = "import sys; sys.modules['pytest'] = None; import vx.testing"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: vx.testing needs pytest, which vx-build does not install by default; "
        "fix: pip install 'vx-build[testing]'"
    )


def _plugin_workspace(vx_workspace: Any, word: str) -> VxWorkspace:
    return vx_workspace(
        {
            "pyproject.toml": {
                "tool": {"vx": {"plugins": ["vxt_greeter"], "tasks": {"t": {"cmd": "true"}}}}
            },
            "vxt_greeter.py": (
                "import vx\n\n@vx.hookimpl\n"
                f"def vx_run_finish(run, config):\n    print('greeter says {word}')\n"
            ),
        }
    )


def test_in_process_runs_do_not_share_workspace_modules(vx_workspace: Any) -> None:
    """Two workspaces with a plugin module of the same name: each run imports its own, and
    neither the module nor the workspace root stays behind."""
    path = list(sys.path)
    first = _plugin_workspace(vx_workspace, "one").run("run", "t")
    second = _plugin_workspace(vx_workspace, "two").run("run", "t")
    first.fnmatch_lines(["greeter says one"], stream="stdout")
    second.fnmatch_lines(["greeter says two"], stream="stdout")
    second.no_fnmatch_line("*one*")
    assert "vxt_greeter" not in sys.modules
    assert sys.path == path


def test_isolated_imports_keeps_modules_from_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "vxt_local.py").write_text("VALUE = 1\n")
    with isolated_imports(tmp_path):
        sys.path.insert(0, str(tmp_path))
        import vxt_local  # noqa: F401

        import vx.keys  # noqa: F401 (imported from the installed vx: kept)
    assert "vxt_local" not in sys.modules
    assert "vx.keys" in sys.modules
    assert str(tmp_path) not in sys.path


TEXT = "vx 0.1\n• a#build: cache miss\na#build: built\n Tasks: 1 successful\n"


def test_fnmatch_lines_in_order() -> None:
    matcher = LineMatcher(TEXT)
    matcher.fnmatch_lines(["*a#build: cache miss", " Tasks: * successful"])
    matcher.fnmatch_lines(["a#build: built", " Tasks:*"], consecutive=True)
    matcher.no_fnmatch_line("*failed*")


def test_fnmatch_lines_failures_explain_themselves() -> None:
    matcher = LineMatcher(TEXT)
    with pytest.raises(AssertionError, match=r"no line matches ' Tasks: \* failed'") as info:
        matcher.fnmatch_lines(["*cache miss", " Tasks: * failed"])
    assert "matched:  '*cache miss'" in str(info.value)
    assert "' Tasks: 1 successful'" in str(info.value)  # the lines searched
    with pytest.raises(AssertionError, match=r"no line matches 'vx 0\.1'"):
        matcher.fnmatch_lines([" Tasks:*", "vx 0.1"])  # order matters
    with pytest.raises(AssertionError, match="the next line does not match"):
        matcher.fnmatch_lines(["vx 0.1", "a#build: built"], consecutive=True)
    with pytest.raises(AssertionError, match="matches '\\*built'"):
        matcher.no_fnmatch_line("*built")
