"""Every bad input gets one clear message — file, key path, what was expected, a "did you
mean" where it helps — the documented exit code, and never a traceback (unless ``--debug``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import RunResult, VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

EXIT_USAGE = 2
EXIT_CONFIG = 78


ROOT: dict[str, Any] = {"tool": {"vx": {"members": ["packages/*"]}}}
CORE: dict[str, Any] = {
    "project": {"name": "acme-core"},
    "tool": {"vx": {"tasks": {"build": {"cmd": "touch ran"}, "lint": {"cmd": "touch ran"}}}},
}


def api(tasks: dict[str, Any] | None = None, **vx: Any) -> dict[str, Any]:
    """``packages/api/pyproject.toml`` content."""
    tasks = {"build": {"cmd": "touch ran"}} if tasks is None else tasks
    return {
        "project": {"name": "acme-api", "dependencies": ["acme-core"]},
        "tool": {"vx": {**vx, "tasks": tasks}},
    }


def workspace(vx_workspace: Make, **files: Any) -> VxWorkspace:
    """A valid two-project workspace, with ``files`` (``api=``, ``root=``, or paths) replaced."""
    content: dict[str, Any] = {
        "pyproject.toml": files.pop("root", ROOT),
        "packages/core/pyproject.toml": CORE,
        "packages/api/pyproject.toml": files.pop("api", api()),
    }
    content.update(files.pop("extra", {}))
    assert not files
    return vx_workspace(content)


def assert_error(
    result: RunResult, code: int, where: str | None, *fragments: str, ws: VxWorkspace
) -> str:
    """One ``vx: error:`` message, with ``where`` (``file: key``) and every fragment."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    message = result.stderr
    assert message.count("vx: error:") == 1, message
    if where is not None:
        assert where in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert result.summary is None  # nothing ran
    assert not list(ws.path.rglob("ran"))
    return message


def at(ws: VxWorkspace, file: str, key: str) -> str:
    return f"{ws.path / file}: {key}:"


# -- malformed files -----------------------------------------------------------------------------


def test_malformed_toml_in_a_member(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api='[project]\nname = "acme-api"\n[tool.vx.tasks.build\n')
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        f"{ws.path / 'packages/api/pyproject.toml'}: invalid TOML",
        "line 3",
        ws=ws,
    )


def test_malformed_toml_at_the_root(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, root='[tool.vx]\nmembers = ["packages/*"\n')
    result = ws.run("run", "build")
    assert_error(result, EXIT_CONFIG, f"{ws.path / 'pyproject.toml'}: invalid TOML", ws=ws)


def test_malformed_toml_in_a_subprocess(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api="[project\n")
    result = ws.run_subprocess("run", "build")
    assert_error(result, EXIT_CONFIG, "packages/api/pyproject.toml: invalid TOML", ws=ws)


# -- unknown keys and wrong types ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content", "file", "key", "hint"),
    [
        (
            "root",
            {"tool": {"vx": {"memberz": ["packages/*"]}}},
            "pyproject.toml",
            "tool.vx.memberz",
            "did you mean 'members'?",
        ),
        (
            "root",
            {"tool": {"vx": {**ROOT["tool"]["vx"], "defaults": {"tasks": {"t": {"cmdd": "x"}}}}}},
            "pyproject.toml",
            "tool.vx.defaults.tasks.t.cmdd",
            "did you mean 'cmd'?",
        ),
        (
            "api",
            api({"build": {"cmd": "true", "depend_on": ["^build"]}}),
            "packages/api/pyproject.toml",
            "tool.vx.tasks.build.depend_on",
            "did you mean 'depends_on'?",
        ),
        (
            "api",
            {"project": {"name": "acme-api"}, "tool": {"vx": {"taks": {}}}},
            "packages/api/pyproject.toml",
            "tool.vx.taks",
            "did you mean 'tasks'?",
        ),
    ],
    ids=["root", "defaults-task", "task", "project"],
)
def test_unknown_key(
    vx_workspace: Make, target: str, content: Any, file: str, key: str, hint: str
) -> None:
    ws = workspace(vx_workspace, **{target: content})
    result = ws.run("run", "lint")
    unknown = f"unknown key '{key.rsplit('.')[-1]}'"
    assert_error(result, EXIT_CONFIG, at(ws, file, key), unknown, hint, ws=ws)


def test_a_blocked_plugins_settings_are_not_validated(vx_workspace: Make) -> None:
    """``-p no:NAME`` turns a plugin off for one run without editing its settings away."""
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["p"]\n[tool.vx.history]\nkeep_runs = 5\n'
                '[tool.vx.sandbox]\nmode = "best-effort"\n'
            ),
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.build]\ncmd = "echo built"\n'
                "sandbox = { network = false }\n"
            ),
        }
    )
    result = ws.run("-p", "no:history", "-p", "no:sandbox", "run", "build")
    assert result.exit_code == 0, result.output
    assert "built" in result.stdout
    # Loaded, the same plugins still validate their settings.
    ws.write({"pyproject.toml": '[tool.vx]\nmembers = ["p"]\n[tool.vx.history]\nkeep_run = 5\n'})
    typo = ws.run("-p", "no:sandbox", "run", "build")
    assert typo.exit_code == EXIT_CONFIG
    assert "tool.vx.history.keep_run: unknown key 'keep_run'" in typo.stderr


@pytest.mark.parametrize(
    ("task", "key", "expected"),
    [
        ({"cmd": "true", "depends_on": ["^build", 3]}, "depends_on[1]", "valid string"),
        ({"cmd": "true", "depends_on": "build"}, "depends_on", "valid list"),
        ({"cmd": 3}, "cmd", "valid string"),
        ({"cmd": "true", "outputs": [["dist"]]}, "outputs[0]", "valid string"),
        ({"cmd": "true", "cache": 3.5}, "cache", "valid boolean"),
        ({"cmd": "true", "cwd": "/abs"}, "cwd", "relative to the project directory"),
        ({"cmd": "  "}, "cmd", "must not be empty"),
        ({"cmd": "true", "depends_on": ["b", "^a#b"]}, "depends_on[1]", "expected 'task', '^task'"),
    ],
    ids=["list-item", "list", "cmd", "nested-list", "bool", "abs-cwd", "empty-cmd", "syntax"],
)
def test_wrong_type_in_a_task(
    vx_workspace: Make, task: dict[str, Any], key: str, expected: str
) -> None:
    ws = workspace(vx_workspace, api=api({"build": task}))
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", f"tool.vx.tasks.build.{key}"),
        expected,
        ws=ws,
    )


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ({"members": "packages/*"}, "tool.vx.members", "valid list"),
        ({"members": ["packages/*"], "concurrency": "lots"}, "tool.vx.concurrency", "'50%'"),
        ({"members": ["packages/*"], "concurrency": 0}, "tool.vx.concurrency", "at least 1"),
        ({"members": ["packages/*"], "grace_period": -1}, "tool.vx.grace_period", "0"),
        ({"members": ["packages/*"], "env_mode": "lax"}, "tool.vx.env_mode", "'strict'"),
        ({"members": ["packages/*"], "plugins": "x"}, "tool.vx.plugins", "list of strings"),
        ({"members": ["/abs/*"]}, "tool.vx.members[0]", "relative to the workspace root"),
        ({"members": ["../*"]}, "tool.vx.members[0]", "relative to the workspace root"),
    ],
)
def test_wrong_type_at_the_root(
    vx_workspace: Make, table: dict[str, Any], key: str, expected: str
) -> None:
    ws = workspace(vx_workspace, root={"tool": {"vx": table}})
    result = ws.run("run", "lint")
    message = assert_error(result, EXIT_CONFIG, at(ws, "pyproject.toml", key), expected, ws=ws)
    assert message.count("got ") <= 1  # the offending value is shown once


def test_root_only_key_in_a_member(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api=api(members=["x/*"]))
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", "tool.vx.members"),
        "only valid in the workspace root",
        ws=ws,
    )


def test_task_without_cmd_or_dependencies(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api=api({"test": {}}))
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", "tool.vx.tasks.test"),
        "no cmd and no depends_on",
        "[tool.vx.defaults.tasks.test]",
        ws=ws,
    )


# -- members, project names ----------------------------------------------------------------------


def test_members_glob_matching_nothing(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, root={"tool": {"vx": {"members": ["packages/*", "libs/*"]}}})
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "pyproject.toml", "tool.vx.members[1]"),
        "'libs/*' matches no project",
        ws=ws,
    )


def test_members_glob_matching_directories_without_pyproject(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        root={"tool": {"vx": {"members": ["packages/*", "libs/*"]}}},
        extra={"libs/x/README.md": "hi"},
    )
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "pyproject.toml", "tool.vx.members[1]"),
        "none holds a pyproject.toml",
        ws=ws,
    )


def test_two_projects_with_the_same_name(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        extra={"packages/zzz/pyproject.toml": {"project": {"name": "Acme_Core"}}},
    )
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/zzz/pyproject.toml", "project.name"),
        "'acme-core'",
        str(ws.path / "packages/core/pyproject.toml"),
        "must be unique",
        ws=ws,
    )


# -- depends_on ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depends_on", "index", "fragments"),
    [
        (["^build", "lnt"], 1, ["no task 'lnt'", "did you mean 'lint'?"]),
        (["acme-cor#build"], 0, ["unknown project 'acme-cor'", "did you mean 'acme-core'?"]),
        (["acme-core#biuld"], 0, ["no task 'biuld'", "did you mean 'build'?"]),
    ],
    ids=["task", "project", "project-task"],
)
def test_depends_on_unknown(
    vx_workspace: Make, depends_on: list[str], index: int, fragments: list[str]
) -> None:
    tasks = {"build": {"cmd": "true", "depends_on": depends_on}, "lint": {"cmd": "true"}}
    ws = workspace(vx_workspace, api=api(tasks))
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", f"tool.vx.tasks.build.depends_on[{index}]"),
        *fragments,
        ws=ws,
    )


def test_project_depends_on_unknown_project(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api=api(depends_on=["acme-core", "acme-tool"]))
    result = ws.run("run", "lint")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", "tool.vx.depends_on[1]"),
        "unknown project 'acme-tool'",
        ws=ws,
    )


def project(name: str, build: dict[str, Any], deps: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "project": {"name": name, "dependencies": list(deps)},
        "tool": {"vx": {"tasks": {"build": build}}},
    }


def test_dependency_cycle_prints_the_cycle(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a", {"cmd": "touch ran", "depends_on": ["b#build"]}
            ),
            "packages/b/pyproject.toml": project(
                "b", {"cmd": "touch ran", "depends_on": ["a#build"]}
            ),
        }
    )
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/a/pyproject.toml", "tool.vx.tasks.build.depends_on"),
        "dependency cycle: a#build -> b#build -> a#build",
        ws=ws,
    )
    graph = ws.run("graph")
    assert graph.exit_code == EXIT_CONFIG
    assert "dependency cycle" in graph.stderr


def test_dependency_cycle_through_project_dependencies(vx_workspace: Make) -> None:
    caret = {"cmd": "touch ran", "depends_on": ["^build"]}
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", caret, deps=("c",)),
            "packages/b/pyproject.toml": project("b", caret, deps=("a",)),
            "packages/c/pyproject.toml": project("c", caret, deps=("b",)),
        }
    )
    result = ws.run("run", "a#build")
    message = assert_error(result, EXIT_CONFIG, None, "project dependency cycle: ", ws=ws)
    cycle = message.split("project dependency cycle: ")[1].split(";")[0].split(" -> ")
    assert len(cycle) == 4
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}


def test_task_depending_on_itself(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a", {"cmd": "touch ran", "depends_on": ["build"]}
            ),
        }
    )
    result = ws.run("run", "build")
    assert_error(result, EXIT_CONFIG, None, "a#build -> a#build", ws=ws)


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["biuld"], ["no project has a task named 'biuld'", "did you mean 'build'?"]),
        (["acme-api#biuld"], ["no task 'biuld'", "did you mean 'build'?"]),
        (["acme-apx#build"], ["unknown project 'acme-apx'", "did you mean 'acme-api'?"]),
        (["publish", "-F", "acme-core"], ["no selected project has a task named 'publish'"]),
    ],
    ids=["task", "task-id", "project-id", "filtered"],
)
def test_run_of_an_unknown_task(vx_workspace: Make, args: list[str], fragments: list[str]) -> None:
    ws = workspace(vx_workspace, api=api({"build": {"cmd": "touch ran"}, "publish": {"cmd": "x"}}))
    result = ws.run("run", *args)
    assert_error(result, EXIT_USAGE, None, *fragments, ws=ws)


def test_filters_selecting_no_project_run_nothing(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    result = ws.run("run", "build", "-F", "acme-*", "-F", "!acme-*")
    assert result.exit_code == 0, result.output
    assert "no tasks to run" in result.stderr
    assert not list(ws.path.rglob("ran"))


def test_bad_filter(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    result = ws.run("run", "build", "--filter", "acme-cor")
    assert_error(result, EXIT_USAGE, "--filter 'acme-cor'", "did you mean 'acme-core'?", ws=ws)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "build", "-j", "0"], "-j/--concurrency"),
        (["run", "build", "-j", "many"], "-j/--concurrency"),
        (["run", "build", "--continue=maybe"], "invalid choice"),
        (["run"], "TASK"),
        (["frobnicate"], "invalid choice"),
        (["-p", "no:run", "run", "build"], "cannot be blocked"),
        (["-C", "does/not/exist", "run", "build"], "not a directory"),
    ],
)
def test_usage_errors(vx_workspace: Make, args: list[str], fragment: str) -> None:
    ws = workspace(vx_workspace)
    result = ws.run(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert not list(ws.path.rglob("ran"))


def test_no_command_prints_help(vx_workspace: Make) -> None:
    result = workspace(vx_workspace).run()
    assert result.exit_code == EXIT_USAGE
    assert "run" in result.stderr
    assert "graph" in result.stderr


# -- plugins ---------------------------------------------------------------------------------------


def test_missing_required_plugin(vx_workspace: Make) -> None:
    root = {
        "tool": {"vx": {"members": ["packages/*"], "required_plugins": ["vx-nonexistent>=1.2"]}}
    }
    ws = workspace(vx_workspace, root=root)
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "pyproject.toml", "tool.vx.required_plugins[0]"),
        "'vx-nonexistent>=1.2' is not installed",
        "pip install 'vx-nonexistent>=1.2'",
        ws=ws,
    )


def test_required_plugin_too_old(vx_workspace: Make) -> None:
    root = {"tool": {"vx": {"members": ["packages/*"], "required_plugins": ["pluggy>=999"]}}}
    ws = workspace(vx_workspace, root=root)
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "pyproject.toml", "tool.vx.required_plugins[0]"),
        "does not satisfy",
        "pip install 'pluggy>=999'",
        ws=ws,
    )


def test_plugin_that_fails_to_import(vx_workspace: Make) -> None:
    root = {"tool": {"vx": {"members": ["packages/*"], "plugins": ["vx_tests_broken_plugin"]}}}
    ws = workspace(
        vx_workspace,
        root=root,
        extra={"vx_tests_broken_plugin.py": "raise RuntimeError('kaboom at import')\n"},
    )
    result = ws.run_subprocess("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        "plugin 'vx_tests_broken_plugin'",
        "tool.vx.plugins",
        "RuntimeError: kaboom at import",
        ws=ws,
    )


def test_plugin_that_does_not_exist(vx_workspace: Make) -> None:
    root = {"tool": {"vx": {"members": ["packages/*"], "plugins": ["vx_tests_no_such_plugin"]}}}
    ws = workspace(vx_workspace, root=root)
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        "plugin 'vx_tests_no_such_plugin'",
        "failed to import",
        "install the distribution that provides it",
        ws=ws,
    )


def test_dash_p_plugin_that_does_not_exist(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    result = ws.run("-p", "vx_tests_no_such_plugin", "run", "build")
    assert_error(result, EXIT_CONFIG, "plugin 'vx_tests_no_such_plugin' (from -p)", ws=ws)


# -- outside a workspace -------------------------------------------------------------------------


@pytest.mark.parametrize("files", [{}, {"pyproject.toml": {"project": {"name": "not-vx"}}}])
def test_running_outside_any_workspace(vx_workspace: Make, files: dict[str, Any]) -> None:
    ws = vx_workspace(files)
    for args in (["run", "build"], ["graph"]):
        result = ws.run(*args)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "no vx workspace found" in result.stderr
        assert str(ws.path) in result.stderr
        assert "[tool.vx]" in result.stderr
        assert "Traceback" not in result.output
    sub = ws.run_subprocess("run", "build")
    assert sub.exit_code == EXIT_USAGE
    assert "no vx workspace found" in sub.stderr
    # Commands that need no workspace still work there.
    assert ws.run("plugins").exit_code == 0


# -- --debug ---------------------------------------------------------------------------------------


def test_debug_shows_a_traceback(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace, api=api({"build": {"cmd": "true", "depends_on": ["lnt"]}}))
    quiet = ws.run("run", "build")
    assert quiet.exit_code == EXIT_CONFIG
    assert "Traceback" not in quiet.output
    loud = ws.run("--debug", "run", "build")
    assert loud.exit_code == EXIT_CONFIG
    assert "Traceback (most recent call last)" in loud.stderr
    assert "did you mean 'lint'?" in loud.stderr or "no task 'lnt'" in loud.stderr
    after = ws.run("run", "build", "--debug")  # anywhere on the command line
    assert "Traceback (most recent call last)" in after.stderr


# -- VX_* environment overrides -------------------------------------------------------------------


def concurrency(ws: VxWorkspace, *args: str, env: dict[str, str] | None = None) -> int:
    result = ws.run("run", "build", "--dry=json", *args, env=env)
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["concurrency"])


def test_vx_concurrency_environment_override(vx_workspace: Make) -> None:
    root = {"tool": {"vx": {"members": ["packages/*"], "concurrency": 3}}}
    ws = workspace(vx_workspace, root=root)
    assert concurrency(ws) == 3
    assert concurrency(ws, env={"VX_CONCURRENCY": "8"}) == 8
    assert concurrency(ws, env={"vx_concurrency": "5"}) == 5  # case-insensitive like pydantic
    assert concurrency(ws, "-j", "2", env={"VX_CONCURRENCY": "8"}) == 2  # -j beats everything


def test_invalid_vx_concurrency(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    result = ws.run("run", "build", env={"VX_CONCURRENCY": "abc"})
    where = "environment variable VX_CONCURRENCY"
    message = assert_error(result, EXIT_CONFIG, where, "'abc'", ws=ws)
    assert "pyproject.toml" not in message  # the file is not to blame


def test_vx_env_list_override_with_commas(vx_workspace: Make) -> None:
    tasks = {"build": {"cmd": 'echo "seen=${MY_VX_GLOBAL-unset}" > "$VX_WORKSPACE_ROOT/out"'}}
    ws = workspace(vx_workspace, api=api(tasks))
    env = {"VX_GLOBAL_ENV": "OTHER,MY_VX_GLOBAL", "MY_VX_GLOBAL": "yes"}
    result = ws.run("run", "acme-api#build", env=env)
    assert result.exit_code == 0, result.output
    assert (ws.path / "out").read_text() == "seen=yes\n"


def test_vx_plugins_environment_variable_does_not_break_settings(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    result = ws.run("run", "acme-core#lint", env={"VX_PLUGINS": "json"})
    assert result.exit_code == 0, result.output
    plugins = ws.run("plugins", "--json", env={"VX_PLUGINS": "json"})
    names = [p["name"] for p in json.loads(plugins.stdout)["plugins"]]
    assert "json" in names


# -- a warm run (validated workspace cached in .vx/) sees every change -------------------------


def test_config_errors_are_reported_after_a_successful_run(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    assert ws.run("run", "build", "--dry=json").exit_code == 0
    assert ws.run("run", "build", "--dry=json").exit_code == 0  # warm
    ws.write({"packages/api/pyproject.toml": api({"build": {"cmd": "true", "depend_on": []}})})
    result = ws.run("run", "build")
    assert_error(
        result,
        EXIT_CONFIG,
        at(ws, "packages/api/pyproject.toml", "tool.vx.tasks.build.depend_on"),
        "did you mean 'depends_on'?",
        ws=ws,
    )
    broken = ws.run("run", "build", env={"VX_CONCURRENCY": "abc"})
    assert broken.exit_code == EXIT_CONFIG
    assert "VX_CONCURRENCY" in broken.stderr


def test_warm_run_sees_new_members_and_edited_tasks(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    first = ws.run("run", "build", "--dry=json")
    assert {t["id"] for t in json.loads(first.stdout)["tasks"]} == {
        "acme-core#build",
        "acme-api#build",
    }
    ws.write(
        {
            "packages/new/pyproject.toml": {
                "project": {"name": "acme-new"},
                "tool": {"vx": {"tasks": {"build": {"cmd": "echo new"}}}},
            },
            "packages/api/pyproject.toml": api({"build": {"cmd": "echo edited"}}),
        }
    )
    tasks = {t["id"]: t for t in json.loads(ws.run("run", "build", "--dry=json").stdout)["tasks"]}
    assert set(tasks) == {"acme-core#build", "acme-api#build", "acme-new#build"}
    assert tasks["acme-api#build"]["command"] == "echo edited"
    (ws.path / "packages/new/pyproject.toml").unlink()
    second = ws.run("run", "build", "--dry=json")
    assert "acme-new#build" not in second.stdout


def test_an_unknown_task_in_a_large_workspace_lists_a_few_names(vx_workspace: Make) -> None:
    tasks = {f"task{index:02d}": {"cmd": "true"} for index in range(30)}
    ws = workspace(vx_workspace, api=api(tasks))
    result = ws.run("run", "tsk07")
    assert result.exit_code == 2, result.output
    assert "did you mean 'task07'?" in result.stderr
    assert "task00, task01" in result.stderr
    assert "(and 20 more)" in result.stderr  # 30 here, and build and lint of acme-core
    assert "task29" not in result.stderr
