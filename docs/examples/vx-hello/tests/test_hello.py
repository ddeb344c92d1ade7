"""Tests of vx-hello, written the way a plugin author tests a vx plugin.

The ``vx_workspace`` fixture comes from vx's own pytest plugin, ``vx.testing``,
which pytest loads automatically wherever vx-build is installed. Install the
plugin first (``pip install -e .``) so that vx discovers it through its entry
point, exactly as it will for users; then run ``pytest``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from vx_hello import hooks

import vx

WORKSPACE: dict[str, Any] = {
    "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
    "packages/app/pyproject.toml": {
        "project": {"name": "app"},
        "tool": {"vx": {"tasks": {"greet": {"cmd": 'echo "task sees $HELLO_GREETING"'}}}},
    },
}


def with_settings(**hello: Any) -> dict[str, Any]:
    """WORKSPACE with a ``[tool.vx.hello]`` table."""
    return {
        **WORKSPACE,
        "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], "hello": hello}}},
    }


def test_discovered_through_its_entry_point(vx_workspace):
    result = vx_workspace(WORKSPACE).run("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert plugins["hello"]["distribution"] == "vx-hello"
    assert plugins["hello"]["source"] == "entrypoint"
    assert "vx_configure" in plugins["hello"]["hooks"]


def test_option_is_in_run_help(vx_workspace):
    result = vx_workspace(WORKSPACE).run("run", "--help")
    assert result.exit_code == 0
    assert "--hello-greeting" in result.stdout


def test_greets_after_the_run_and_writes_a_report(vx_workspace):
    workspace = vx_workspace(WORKSPACE)
    result = workspace.run("run", "greet")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"app#greet": "success"}
    assert "task sees hello" in result.stdout  # exported by vx_wrap_command
    assert "hello from vx-hello: 1 task(s) finished (1 success)" in result.stdout
    report = json.loads((workspace.path / ".vx" / "hello.json").read_text())
    assert report["tasks"] == {"app#greet": "success"}
    assert report["exit_code"] == 0


def test_command_line_beats_settings(vx_workspace):
    workspace = vx_workspace(with_settings(greeting="bonjour"))
    assert "bonjour from vx-hello" in workspace.run("run", "greet").stdout
    result = workspace.run("run", "greet", "--hello-greeting", "hoi")
    assert "hoi from vx-hello" in result.stdout
    assert "task sees hoi" in result.stdout


def test_environment_overrides_settings(vx_workspace):
    workspace = vx_workspace(with_settings(greeting="bonjour"))
    result = workspace.run("run", "greet", env={"VX_HELLO__GREETING": "salut"})
    assert "salut from vx-hello" in result.stdout


def test_disabled_in_settings(vx_workspace):
    workspace = vx_workspace(with_settings(enabled=False))
    result = workspace.run("run", "greet")
    assert result.exit_code == 0, result.output
    assert "from vx-hello" not in result.stdout
    assert not (workspace.path / ".vx" / "hello.json").exists()


def test_blocked_with_dash_p(vx_workspace):
    workspace = vx_workspace(WORKSPACE)
    result = workspace.run("-p", "no:hello", "run", "greet")
    assert result.exit_code == 0, result.output
    assert "from vx-hello" not in result.stdout
    assert "task sees hello" not in result.stdout


def test_misspelled_setting_is_an_error(vx_workspace):
    result = vx_workspace(with_settings(greting="hoi")).run("run", "greet")
    assert result.exit_code == 78
    assert "tool.vx.hello.greting" in result.stderr
    assert "did you mean 'greeting'" in result.stderr


def test_greeting_is_part_of_the_cache_key(vx_workspace):
    workspace = vx_workspace(WORKSPACE)
    assert workspace.run("run", "greet").outcomes == {"app#greet": "success"}
    assert workspace.run("run", "greet").outcomes == {"app#greet": "cached"}
    changed = workspace.run("run", "greet", "--hello-greeting", "hoi")
    assert changed.outcomes == {"app#greet": "success"}


def test_hash_component_hook():
    # Hooks are plain functions: unit-test them directly where a run would be overkill.
    config: Any = SimpleNamespace(stash=vx.Stash())
    assert hooks.vx_task_hash_components(task=None, config=config) is None
    config.stash[hooks.GREETING] = "hoi"
    assert hooks.vx_task_hash_components(task=None, config=config) == {"hello.greeting": "hoi"}
