"""The ``vx.testing`` pytest plugin itself."""

from __future__ import annotations

import subprocess
import sys


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
