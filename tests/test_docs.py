"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vx import hookspecs
from vx.hookref import BEGIN, END, render, update

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_MD = ROOT / "docs" / "plugins.md"


def test_hook_reference_matches_hookspecs() -> None:
    text = PLUGINS_MD.read_text()
    assert update(text, render()) == text, "run: python -m vx.hookref docs/plugins.md"


def test_hook_reference_documents_every_hook() -> None:
    text = PLUGINS_MD.read_text()
    section = text[text.index(BEGIN) : text.index(END)]
    hooks = sorted(name for name in vars(hookspecs) if name.startswith("vx_"))
    assert len(hooks) >= 17
    for name in hooks:
        assert f"#### `{name}`" in section
    firstresult = [n for n in hooks if getattr(hookspecs, n).vx_spec["firstresult"]]
    assert section.count("\n*firstresult*\n") == len(firstresult) == 3


def test_hookref_check_reports_a_stale_reference(tmp_path: Path) -> None:
    stale = tmp_path / "plugins.md"
    stale.write_text(f"intro\n{BEGIN}\n### an old hook\n{END}\nrest\n")
    command = [sys.executable, "-m", "vx.hookref"]
    checked = subprocess.run([*command, "--check", str(stale)], capture_output=True, text=True)
    assert checked.returncode == 1
    assert "out of date" in checked.stderr
    subprocess.run([*command, str(stale)], check=True)
    fixed = stale.read_text()
    assert fixed.startswith(f"intro\n{BEGIN}\n")
    assert fixed.endswith(f"{END}\nrest\n")
    assert "an old hook" not in fixed
    assert "#### `vx_task_cache`" in fixed
    assert subprocess.run([*command, "--check", str(stale)]).returncode == 0
