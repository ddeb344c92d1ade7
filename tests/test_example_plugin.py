"""The example plugin ``docs/examples/vx-hello``, built and installed like a user would.

The example is built into a wheel, installed with ``--no-deps`` into a fresh virtual
environment that sees this environment's packages through a ``.pth`` file (no network),
and driven with that environment's ``python -m vx``: it must be discovered through its
entry point, add its option, be called during a real run, and be blockable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import vx
from vx.testing import write_files

pytestmark = pytest.mark.slow

REPO = Path(vx.__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "vx-hello"

WORKSPACE: dict[str, Any] = {
    "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
    "packages/core/pyproject.toml": {
        "project": {"name": "core"},
        "tool": {
            "vx": {"tasks": {"build": {"cmd": 'echo "core sees HELLO_GREETING=$HELLO_GREETING"'}}}
        },
    },
    "packages/app/pyproject.toml": {
        "project": {"name": "app", "dependencies": ["core"]},
        "tool": {"vx": {"tasks": {"build": {"cmd": "echo app built", "depends_on": ["^build"]}}}},
    },
}


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would change which plugins load."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VX_") and key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["VX_DAEMON"] = "0"  # no warm server in these runs
    env.update(extra)
    return env


def _run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env or _clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ok(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 0, (
        f"{completed.args} exited {completed.returncode}\n"
        f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    )
    return completed.stdout


@dataclass
class FreshEnv:
    root: Path
    python: Path

    def vx(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.python), "-m", "vx", *args], cwd, _clean_env(**env))


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> FreshEnv:
    pytest.importorskip("hatchling", reason="the `test` extra (hatchling) is needed to build")
    base = tmp_path_factory.mktemp("example-plugin")
    wheels = base / "wheels"
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-cache-dir",
                "--no-index",
                "-w",
                str(wheels),
                str(EXAMPLE),
            ],
            base,
        )
    )
    (wheel,) = wheels.glob("vx_hello-*.whl")

    venv = base / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(venv)], base))
    python = venv / "bin" / "python"
    site_packages = Path(
        _ok(
            _run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                base,
            )
        ).strip()
    )
    # This environment's packages (vx-build's metadata and entry points, pluggy, pydantic,
    # pytest ...) become visible to the fresh environment without touching the network.
    # site.addsitedir also processes their .pth files, e.g. vx-build's editable install.
    paths = sysconfig.get_paths()
    lines = [
        f"import site; site.addsitedir({path!r})" for path in {paths["purelib"], paths["platlib"]}
    ]
    (site_packages / "_vx_parent_env.pth").write_text("\n".join([*lines, str(REPO)]) + "\n")

    _ok(_run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], base))
    return FreshEnv(venv, python)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_files(root, WORKSPACE)
    return root


def _plugins(completed: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(_ok(completed))["plugins"]}


def test_installed_into_the_fresh_environment_only(fresh_env: FreshEnv, workspace: Path) -> None:
    where = _ok(
        _run([str(fresh_env.python), "-c", "import vx_hello; print(vx_hello.__file__)"], workspace)
    )
    assert Path(where.strip()).is_relative_to(fresh_env.root)
    # ... and it is the wheel that is installed, not the source tree.
    assert not Path(where.strip()).is_relative_to(EXAMPLE)


def test_discovered_through_its_entry_point(fresh_env: FreshEnv, workspace: Path) -> None:
    plugins = _plugins(fresh_env.vx("plugins", "--json", cwd=workspace))
    hello = plugins["hello"]
    assert hello["distribution"] == "vx-hello"
    assert hello["version"] == "0.1.0"
    assert hello["source"] == "entrypoint"
    assert hello["module"] == "vx_hello.hooks"
    assert set(hello["hooks"]) == {
        "vx_addoption",
        "vx_configure",
        "vx_settings_models",
        "vx_task_hash_components",
        "vx_wrap_command",
    }
    assert plugins["run"]["distribution"] == "vx-build"


def test_version_lists_it(fresh_env: FreshEnv, workspace: Path) -> None:
    out = _ok(fresh_env.vx("-VV", cwd=workspace))
    assert "hello: vx-hello 0.1.0 (vx_hello.hooks)" in out


def test_option_shows_in_run_help(fresh_env: FreshEnv, workspace: Path) -> None:
    out = _ok(fresh_env.vx("run", "--help", cwd=workspace))
    assert "--hello-greeting" in out
    assert "--hello-greeting" not in _ok(fresh_env.vx("--help", cwd=workspace))  # run-only option


def test_hooks_are_called_during_a_real_run(fresh_env: FreshEnv, workspace: Path) -> None:
    completed = fresh_env.vx(
        "run", "build", "--hello-greeting", "hoi", "--summarize=summary.json", cwd=workspace
    )
    out = _ok(completed)
    # vx_wrap_command exported the greeting to the task.
    assert "core sees HELLO_GREETING=hoi" in out
    # The Greeter observer registered by vx_configure saw both tasks finish.
    assert "hoi from vx-hello: 2 task(s) finished (2 success)" in out
    report = json.loads((workspace / ".vx" / "hello.json").read_text())
    assert report["greeting"] == "hoi"
    assert report["tasks"] == {"core#build": "success", "app#build": "success"}
    summary = json.loads((workspace / "summary.json").read_text())
    assert report["run_id"] == summary["run_id"]


def test_settings_section_is_validated(fresh_env: FreshEnv, workspace: Path) -> None:
    write_files(
        workspace,
        {
            "pyproject.toml": {
                "tool": {"vx": {"members": ["packages/*"], "hello": {"greting": "x"}}}
            }
        },
    )
    completed = fresh_env.vx("run", "build", cwd=workspace)
    assert completed.returncode == 78
    assert "tool.vx.hello.greting: unknown key 'greting' (did you mean 'greeting'?)" in (
        completed.stderr
    )
    assert "Traceback" not in completed.stderr


def test_blocked_with_dash_p_no(fresh_env: FreshEnv, workspace: Path) -> None:
    plugins = _plugins(fresh_env.vx("-p", "no:hello", "plugins", "--json", cwd=workspace))
    assert "hello" not in plugins
    assert {"run", "workspace", "executor", "terminal"} <= set(plugins)
    out = _ok(fresh_env.vx("-p", "no:hello", "run", "build", cwd=workspace))
    assert "from vx-hello" not in out
    assert "core sees HELLO_GREETING=\n" in out
    assert not (workspace / ".vx" / "hello.json").exists()


def test_autoload_disabled_skips_it_but_loads_builtins(
    fresh_env: FreshEnv, workspace: Path
) -> None:
    plugins = _plugins(
        fresh_env.vx("plugins", "--json", cwd=workspace, VX_DISABLE_PLUGIN_AUTOLOAD="1")
    )
    assert "hello" not in plugins
    assert {row["distribution"] for row in plugins.values()} == {"vx-build"}
    assert {"run", "workspace", "executor", "terminal", "summary"} <= set(plugins)
    out = _ok(fresh_env.vx("run", "build", cwd=workspace, VX_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "app built" in out
    assert "from vx-hello" not in out
    # An explicit -p still loads it (under its module name).
    explicit = _plugins(
        fresh_env.vx(
            "-p",
            "vx_hello.hooks",
            "plugins",
            "--json",
            cwd=workspace,
            VX_DISABLE_PLUGIN_AUTOLOAD="1",
        )
    )
    assert explicit["vx_hello.hooks"]["source"] == "-p"
    assert explicit["vx_hello.hooks"]["distribution"] == "vx-hello"


def test_the_examples_own_tests_pass_in_the_fresh_environment(
    fresh_env: FreshEnv, tmp_path: Path
) -> None:
    # Copy the tests so nothing is written into docs/.
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    completed = _run(
        [str(fresh_env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        tmp_path,
    )
    out = _ok(completed)
    expected = (EXAMPLE / "tests" / "test_hello.py").read_text().count("\ndef test_")
    assert expected >= 5
    assert re.search(rf"\b{expected} passed\b", out), out
    assert "failed" not in out
    assert "error" not in out.lower()
