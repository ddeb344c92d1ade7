"""Plugin loading, ordering, blocking, errors, settings and the extension hooks.

Plugins are modules written into the temporary workspace and loaded through
``[tool.vx] plugins``, ``VX_PLUGINS`` or ``-p``; the entry-point tier uses a fake installed
distribution (a ``*.dist-info`` directory on ``PYTHONPATH``) in a child process. In-process
runs forget the workspace's modules afterwards (``vx.testing``), so tests may reuse names.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

import vx
from vx.testing import RunResult, VxWorkspace

MakeWorkspace = Callable[..., VxWorkspace]

BUILTINS = {"workspace", "executor", "terminal", "summary", "run", "graph", "plugins"}


def module(body: str) -> str:
    return "import vx\n" + textwrap.dedent(body)


def root(**table: Any) -> dict[str, Any]:
    """The workspace root ``pyproject.toml``."""
    return {"pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], **table}}}}


def projects(*names: str, cmd: str = "echo built-{name}") -> dict[str, Any]:
    """Projects with a ``build`` task; not cached, so that every run really runs it."""
    return {
        f"packages/{name}/pyproject.toml": {
            "project": {"name": name},
            "tool": {"vx": {"tasks": {"build": {"cmd": cmd.format(name=name), "cache": False}}}},
        }
        for name in names
    }


def plugin_rows(result: RunResult) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)["plugins"]
    return rows


def assert_clean_error(result: RunResult, code: int) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("vx: error: "), result.stderr


# -- loading order and blocking (four tiers, in a child process) --------------------------

FAKE_DIST = "vx-fake"


def tiered_workspace(make: MakeWorkspace, *, fake_body: str | None = None) -> VxWorkspace:
    """A workspace with one plugin per tier; each records its ``vx_configure`` call.

    ``site/`` (put on ``PYTHONPATH``) holds the fake installed distribution ``vx-fake``
    (entry point ``fake = vxt_fake_hooks``) and the modules named by ``VX_PLUGINS`` / ``-p``;
    ``vxt_cfg`` sits in the workspace root, named by ``[tool.vx] plugins``.
    """
    record = """
        from pathlib import Path

        @vx.hookimpl
        def vx_configure(config):
            with open(Path(config.root) / "configured.txt", "a") as f:
                f.write("{name}\\n")
    """
    files: dict[str, Any] = {
        **root(plugins=["vxt_cfg"]),
        **projects("a"),
        "vxt_cfg.py": module(record.format(name="vxt_cfg")),
        "site/vxt_env.py": module(record.format(name="vxt_env")),
        "site/vxt_cli.py": module(record.format(name="vxt_cli")),
        "site/vxt_fake_hooks.py": module(fake_body or record.format(name="fake")),
        "site/vx_fake-1.2.3.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {FAKE_DIST}\nVersion: 1.2.3\n"
        ),
        "site/vx_fake-1.2.3.dist-info/entry_points.txt": "[vx]\nfake = vxt_fake_hooks\n",
    }
    return make(files)


def tiered_env(workspace: VxWorkspace, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(workspace.path / "site"), "VX_PLUGINS": "vxt_env", **extra}


def configured(workspace: VxWorkspace) -> list[str]:
    path = workspace.path / "configured.txt"
    return path.read_text().split() if path.exists() else []


def test_loading_order(vx_workspace: MakeWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    workspace = tiered_workspace(vx_workspace)
    result = workspace.run_subprocess(
        "-p", "vxt_cli", "plugins", "--json", env=tiered_env(workspace)
    )
    rows = plugin_rows(result)
    sources = [row["source"] for row in rows]
    # Built-ins -> entry points -> VX_PLUGINS -> [tool.vx] plugins -> -p
    assert list(dict.fromkeys(sources)) == [
        "builtin",
        "entrypoint",
        "VX_PLUGINS",
        "tool.vx.plugins",
        "-p",
    ]
    assert {row["name"] for row in rows if row["source"] == "builtin"} >= BUILTINS
    ours = {"fake", "vxt_env", "vxt_cfg", "vxt_cli"}  # (other installed plugins may load too)
    tail = [(row["name"], row["source"]) for row in rows if row["name"] in ours]
    assert tail == [
        ("fake", "entrypoint"),
        ("vxt_env", "VX_PLUGINS"),
        ("vxt_cfg", "tool.vx.plugins"),
        ("vxt_cli", "-p"),
    ]
    fake = next(row for row in rows if row["name"] == "fake")
    assert (fake["distribution"], fake["version"]) == (FAKE_DIST, "1.2.3")
    # Hooks are called like pytest's: the plugin registered last is called first.
    assert configured(workspace) == ["vxt_cli", "vxt_cfg", "vxt_env", "fake"]


@pytest.mark.parametrize("blocked", ["fake", "vxt_env", "vxt_cfg", "vxt_cli"])
def test_dash_p_no_blocks_any_tier(
    vx_workspace: MakeWorkspace, monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    monkeypatch.delenv("VX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    workspace = tiered_workspace(vx_workspace)
    result = workspace.run_subprocess(
        "-p", "vxt_cli", "-p", f"no:{blocked}", "plugins", "--json", env=tiered_env(workspace)
    )
    names = {row["name"] for row in plugin_rows(result)}
    everything = {"fake", "vxt_env", "vxt_cfg", "vxt_cli"}
    assert names & everything == everything - {blocked}
    assert names >= BUILTINS
    assert sorted(configured(workspace)) == sorted(everything - {blocked})


def test_autoload_disabled_skips_entry_points_only(vx_workspace: MakeWorkspace) -> None:
    workspace = tiered_workspace(vx_workspace)
    env = tiered_env(workspace, VX_DISABLE_PLUGIN_AUTOLOAD="1")
    result = workspace.run_subprocess("-p", "vxt_cli", "plugins", "--json", env=env)
    names = {row["name"] for row in plugin_rows(result)}
    assert "fake" not in names
    assert {"vxt_env", "vxt_cfg", "vxt_cli"} <= names
    assert names >= BUILTINS


@pytest.mark.parametrize(
    ("fake_body", "expected"),
    [
        pytest.param(
            "raise ImportError('cannot import name x from y')",
            "plugin 'fake' (vx-fake 1.2.3, entry point vxt_fake_hooks) failed to import: "
            "ImportError: cannot import name x from y",
            id="import",
        ),
        pytest.param(
            "@vx.hookimpl\ndef vx_configure(config):\n    raise KeyError('boom')\n",
            "plugin 'fake' (vx-fake 1.2.3) raised in vx_configure: KeyError: 'boom'",
            id="configure",
        ),
    ],
)
def test_entry_point_errors_name_the_distribution(
    vx_workspace: MakeWorkspace, monkeypatch: pytest.MonkeyPatch, fake_body: str, expected: str
) -> None:
    monkeypatch.delenv("VX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    workspace = tiered_workspace(vx_workspace, fake_body=fake_body)
    result = workspace.run_subprocess("run", "build", env=tiered_env(workspace))
    assert_clean_error(result, 78)
    assert expected in result.stderr


# -- built-ins ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run", "workspace", "executor"])
def test_essential_builtins_cannot_be_blocked(vx_workspace: MakeWorkspace, name: str) -> None:
    result = vx_workspace({**root(), **projects("a")}).run("-p", f"no:{name}", "run", "build")
    assert_clean_error(result, 2)
    assert f"-p no:{name}: plugin '{name}' is built into vx" in result.stderr
    assert "cannot be blocked" in result.stderr


def test_blocking_terminal_silences_output_but_summary_is_written(
    vx_workspace: MakeWorkspace,
) -> None:
    workspace = vx_workspace({**root(), **projects("a", "b")})
    loud = workspace.run("run", "build")
    assert loud.exit_code == 0, loud.output
    assert "built-a" in loud.stdout
    assert "Tasks:" in loud.stdout

    quiet = workspace.run("-p", "no:terminal", "run", "build")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == ""
    assert quiet.outcomes == {"a#build": "success", "b#build": "success"}
    assert quiet.summary is not None
    assert quiet.summary["exit_code"] == 0


def test_plugins_json_lists_builtins_with_distribution_and_hooks(
    vx_workspace: MakeWorkspace,
) -> None:
    name = "vxt_listed"
    workspace = vx_workspace(
        {
            **root(plugins=[name]),
            **projects("a"),
            f"{name}.py": module(
                """
                @vx.hookimpl
                def vx_task_start(task, run):
                    pass

                @vx.hookimpl
                def vx_modify_graph(graph, config):
                    pass
                """
            ),
        }
    )
    rows = {row["name"]: row for row in plugin_rows(workspace.run("plugins", "--json"))}
    for builtin in BUILTINS:
        assert rows[builtin]["distribution"] == "vx-build"
        assert rows[builtin]["version"] == vx.__version__
        assert rows[builtin]["source"] == "builtin"
    assert rows["workspace"]["hooks"] == ["vx_load_workspace"]
    assert rows["executor"]["hooks"] == ["vx_executor"]
    assert "vx_add_commands" in rows["run"]["hooks"]
    assert "vx_run_finish" in rows["summary"]["hooks"]
    assert {"vx_addoption", "vx_configure"} <= set(rows["terminal"]["hooks"])
    assert rows[name] == {
        "name": name,
        "distribution": None,
        "version": None,
        "module": name,
        "source": "tool.vx.plugins",
        "hooks": ["vx_modify_graph", "vx_task_start"],
    }

    text = workspace.run("plugins")
    assert text.exit_code == 0
    assert re.search(r"^workspace\s+vx-build \S+\s+builtin\s+vx\.pyproject$", text.stdout, re.M)
    assert "hooks: vx_modify_graph, vx_task_start" in text.stdout


def test_version_verbose_lists_plugins(vx_workspace: MakeWorkspace) -> None:
    name = "vxt_versioned"
    workspace = vx_workspace({**root(plugins=[name]), **projects("a"), f"{name}.py": module("")})
    short = workspace.run("-V")
    assert short.stdout == f"vx {vx.__version__}\n"
    verbose = workspace.run("-VV")
    assert verbose.exit_code == 0
    assert verbose.stdout.startswith(f"vx {vx.__version__}\n")
    assert f"  run: vx-build {vx.__version__} (vx.commands.run)" in verbose.stdout
    assert f"  {name}: module {name} ({name})" in verbose.stdout


def test_help_shows_options_added_by_a_plugin(vx_workspace: MakeWorkspace) -> None:
    name = "vxt_options"
    workspace = vx_workspace(
        {
            **root(plugins=[name]),
            **projects("a"),
            f"{name}.py": module(
                """
                from pathlib import Path

                @vx.hookimpl
                def vx_addoption(parser):
                    parser.add_option("--shout", action="store_true", help="SHOUT-GLOBAL-HELP")
                    parser.add_option("--greet-name", command="run", help="GREET-RUN-HELP")

                @vx.hookimpl
                def vx_configure(config):
                    if config.option.command == "run":
                        text = f"{config.option.greet_name} {config.option.shout}"
                        (Path(config.root) / "options.txt").write_text(text)
                """
            ),
        }
    )
    main_help = workspace.run("--help")
    assert main_help.exit_code == 0
    assert "--shout" in main_help.stdout
    assert "SHOUT-GLOBAL-HELP" in main_help.stdout
    assert "--greet-name" not in main_help.stdout

    run_help = workspace.run("run", "--help")
    assert run_help.exit_code == 0
    assert "GREET-RUN-HELP" in run_help.stdout
    assert "--shout" in run_help.stdout

    result = workspace.run("--shout", "run", "build", "--greet-name", "ada")
    assert result.exit_code == 0, result.output
    assert (workspace.path / "options.txt").read_text() == "ada True"


# -- errors ----------------------------------------------------------------------------------


def test_misspelled_hook_is_rejected_with_did_you_mean(vx_workspace: MakeWorkspace) -> None:
    name = "vxt_typo"
    workspace = vx_workspace(
        {
            **root(plugins=[name]),
            **projects("a"),
            f"{name}.py": module(
                """
                @vx.hookimpl
                def vx_task_finnish(result, run):
                    pass
                """
            ),
        }
    )
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert (
        f"plugin '{name}' (module {name}) implements unknown hook 'vx_task_finnish' "
        "(did you mean 'vx_task_finish'?)"
    ) in result.stderr
    assert result.summary is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "raise ValueError('bad at import')",
            "failed to import: ValueError: bad at import",
            id="raises",
        ),
        pytest.param(
            "import vxt_missing_dependency_zzz",
            "failed to import: No module named 'vxt_missing_dependency_zzz'; "
            "the plugin needs 'vxt_missing_dependency_zzz'",
            id="missing-dependency",
        ),
        pytest.param(
            "def broken(:\n    pass",
            "failed to import: SyntaxError",
            id="syntax-error",
        ),
    ],
)
def test_plugin_that_fails_to_import_is_named(
    vx_workspace: MakeWorkspace, body: str, expected: str
) -> None:
    name = "vxt_broken"
    workspace = vx_workspace({**root(plugins=[name]), **projects("a"), f"{name}.py": body})
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert f"plugin '{name}'" in result.stderr
    assert "tool.vx.plugins" in result.stderr
    assert expected in result.stderr


def test_dash_p_of_a_missing_module_is_named(vx_workspace: MakeWorkspace) -> None:
    result = vx_workspace({**root(), **projects("a")}).run("-p", "vxt_nowhere", "run", "build")
    assert_clean_error(result, 78)
    assert "plugin 'vxt_nowhere' (from -p) failed to import" in result.stderr
    assert "install the distribution that provides it, or fix the module name" in result.stderr


@pytest.mark.parametrize(
    ("hook", "signature"),
    [
        ("vx_configure", "config"),
        ("vx_modify_graph", "graph, config"),
        ("vx_task_priorities", "graph, config"),
        ("vx_wrap_command", "task, spec, config"),
    ],
)
def test_plugin_raising_in_a_hook_is_named(
    vx_workspace: MakeWorkspace, hook: str, signature: str
) -> None:
    name = "vxt_raiser"
    body = f"@vx.hookimpl\ndef {hook}({signature}):\n    raise RuntimeError('kaputt')\n"
    workspace = vx_workspace({**root(plugins=[name]), **projects("a"), f"{name}.py": module(body)})
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert (
        f"plugin '{name}' (module {name}) raised in {hook}: RuntimeError: kaputt" in result.stderr
    )


def test_raising_observer_is_disabled_with_one_warning(vx_workspace: MakeWorkspace) -> None:
    flaky, steady = "vxt_flaky", "vxt_steady"
    workspace = vx_workspace(
        {
            **root(plugins=[flaky, steady]),
            **projects("a", "b", "c"),
            f"{flaky}.py": module(
                """
                from pathlib import Path

                @vx.hookimpl
                def vx_task_finish(result, run):
                    raise RuntimeError("observer bug")

                @vx.hookimpl
                def vx_run_finish(run, config):
                    (Path(config.root) / "flaky-finished.txt").write_text("called")
                """
            ),
            f"{steady}.py": module(
                """
                from pathlib import Path

                config_root = None

                @vx.hookimpl
                def vx_configure(config):
                    global config_root
                    config_root = config.root

                @vx.hookimpl
                def vx_task_finish(result, run):
                    with open(Path(config_root) / "steady.txt", "a") as f:
                        f.write(result.task.id + "\\n")
                """
            ),
        }
    )
    result = workspace.run("run", "build", "-j", "1")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#build": "success", "b#build": "success", "c#build": "success"}
    warning = (
        f"vx: warning: plugin '{flaky}' (module {flaky}) raised in vx_task_finish and is "
        "disabled for the rest of this run: RuntimeError: observer bug"
    )
    assert result.stderr.count(warning) == 1, result.stderr
    assert result.stderr.count("warning") == 1, result.stderr
    # Disabled for the rest of the run: its other observer hooks are not called either ...
    assert not (workspace.path / "flaky-finished.txt").exists()
    # ... while other observers see every event, and the reporter still prints its summary.
    assert sorted((workspace.path / "steady.txt").read_text().split()) == [
        "a#build",
        "b#build",
        "c#build",
    ]
    assert "3 successful, 3 total" in result.stdout


def test_an_observer_registered_during_the_run_sees_the_later_events(
    vx_workspace: MakeWorkspace,
) -> None:
    # Observer lists are cached per hook: a registration after the first events must show.
    late = "vxt_late"
    workspace = vx_workspace(
        {
            **root(plugins=[late]),
            **projects("a", "b", "c"),
            f"{late}.py": module(
                """
                from pathlib import Path

                class Counter:
                    def __init__(self, root):
                        self.root = root

                    @vx.hookimpl
                    def vx_task_finish(self, result, run):
                        with open(Path(self.root) / "late.txt", "a") as f:
                            f.write(result.task.id + "\\n")

                @vx.hookimpl
                def vx_configure(config):
                    global CONFIG
                    CONFIG = config

                @vx.hookimpl
                def vx_task_start(task, run):
                    pm = CONFIG.pluginmanager
                    if task.id == "b#build" and not pm.has_plugin("late-counter"):
                        pm.register(Counter(CONFIG.root), name="late-counter")
                """
            ),
        }
    )
    result = workspace.run("run", "build", "-j", "1")
    assert result.exit_code == 0, result.output
    # a#build finished before the registration; b and c after it.
    assert (workspace.path / "late.txt").read_text().split() == ["b#build", "c#build"]


def test_hooks_of_an_instance_are_found_on_its_classes() -> None:
    from vx.plugin_manager import VxPluginManager

    class Base:
        @vx.hookimpl
        def vx_task_finish(self, result: object, run: object) -> None:
            pass

    class Observer(Base):
        @property
        def vx_run_start(self) -> None:  # a hook name, but a property: never evaluated
            raise AssertionError("evaluated")

        @vx.hookimpl
        def vx_run_finish(self, run: object, config: object) -> None:
            pass

        def vx_task_start(self, task: object, run: object) -> None:  # no marker: not a hook
            pass

    pm = VxPluginManager()
    plugin = Observer()
    pm.register(plugin, name="observer")
    implemented = {caller.name for caller in pm.get_hookcallers(plugin) or []}
    assert implemented == {"vx_task_finish", "vx_run_finish"}


def test_required_plugins_missing(vx_workspace: MakeWorkspace) -> None:
    workspace = vx_workspace(
        {**root(required_plugins=["vx-build>=0.1", "vx-nonexistent-zzz>=1.2"]), **projects("a")}
    )
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert str(workspace.path / "pyproject.toml") in result.stderr
    assert "tool.vx.required_plugins[1]" in result.stderr
    assert "required plugin 'vx-nonexistent-zzz>=1.2' is not installed" in result.stderr
    assert "fix: pip install 'vx-nonexistent-zzz>=1.2'" in result.stderr


def test_required_plugins_too_old(vx_workspace: MakeWorkspace) -> None:
    workspace = vx_workspace({**root(required_plugins=["vx-build>=99"]), **projects("a")})
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert f"is installed at version {vx.__version__}, which does not satisfy it" in result.stderr
    assert "fix: pip install 'vx-build>=99'" in result.stderr


def test_required_plugins_satisfied(vx_workspace: MakeWorkspace) -> None:
    workspace = vx_workspace({**root(required_plugins=["vx-build>=0.1"]), **projects("a")})
    result = workspace.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#build": "success"}


# -- settings sections --------------------------------------------------------------------------

SETTINGS_PLUGIN = """
    import json
    from pathlib import Path

    from pydantic import BaseModel, ConfigDict

    class GreeterSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        greeting: str = "hi"
        times: int = 1

    @vx.hookimpl
    def vx_settings_models():
        return {"greeter": GreeterSettings}

    @vx.hookimpl
    def vx_configure(config):
        section = config.section("greeter")
        (Path(config.root) / "greeter.json").write_text(json.dumps(section.model_dump()))
"""


def settings_workspace(make: MakeWorkspace, **section: Any) -> VxWorkspace:
    name = "vxt_settings"
    extra = {"greeter": section} if section else {}
    return make(
        {**root(plugins=[name], **extra), **projects("a"), f"{name}.py": module(SETTINGS_PLUGIN)}
    )


def greeter_settings(workspace: VxWorkspace) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads((workspace.path / "greeter.json").read_text())
    return settings


def test_plugin_settings_defaults_and_file(vx_workspace: MakeWorkspace) -> None:
    workspace = settings_workspace(vx_workspace)
    assert workspace.run("run", "build").exit_code == 0
    assert greeter_settings(workspace) == {"greeting": "hi", "times": 1}

    workspace = settings_workspace(vx_workspace, greeting="hoi", times=3)
    assert workspace.run("run", "build").exit_code == 0
    assert greeter_settings(workspace) == {"greeting": "hoi", "times": 3}


def test_plugin_settings_unknown_key_has_did_you_mean(vx_workspace: MakeWorkspace) -> None:
    workspace = settings_workspace(vx_workspace, greting="hoi")
    result = workspace.run("run", "build")
    assert_clean_error(result, 78)
    assert (
        f"{workspace.path / 'pyproject.toml'}: tool.vx.greeter.greting: unknown key 'greting' "
        "(did you mean 'greeting'?)"
    ) in result.stderr


def test_plugin_settings_wrong_type_names_the_key(vx_workspace: MakeWorkspace) -> None:
    result = settings_workspace(vx_workspace, times="many").run("run", "build")
    assert_clean_error(result, 78)
    assert "tool.vx.greeter.times:" in result.stderr
    assert "'many'" in result.stderr


def test_plugin_settings_environment_override(vx_workspace: MakeWorkspace) -> None:
    workspace = settings_workspace(vx_workspace, greeting="hoi", times=3)
    result = workspace.run("run", "build", env={"VX_GREETER__GREETING": "salut"})
    assert result.exit_code == 0, result.output
    assert greeter_settings(workspace) == {"greeting": "salut", "times": 3}

    bad = workspace.run("run", "build", env={"VX_GREETER__TIMES": "lots"})
    assert_clean_error(bad, 78)
    assert "VX_GREETER__TIMES" in bad.stderr


# -- extension hooks -------------------------------------------------------------------------


def test_wrap_command_rewrites_the_command(vx_workspace: MakeWorkspace) -> None:
    first, second = "vxt_wrap_outer", "vxt_wrap_inner"
    workspace = vx_workspace(
        {
            **root(plugins=[first, second]),
            **projects("a", "b"),
            f"{first}.py": module(
                """
                import dataclasses

                @vx.hookimpl
                def vx_wrap_command(task, spec, config):
                    if task.id != "a#build":
                        return None  # keep the command as it is
                    return dataclasses.replace(
                        spec, argv=["/bin/sh", "-c", "echo wrapped $VX_TASK_ID $WRAPPED_BY"]
                    )
                """
            ),
            f"{second}.py": module(
                """
                import dataclasses

                @vx.hookimpl
                def vx_wrap_command(task, spec, config):
                    return dataclasses.replace(spec, env={**spec.env, "WRAPPED_BY": "inner"})
                """
            ),
        }
    )
    result = workspace.run("run", "build", "--log-prefix=task")
    assert result.exit_code == 0, result.output
    assert "a#build: wrapped a#build inner" in result.stdout
    assert "built-a" not in result.stdout
    assert "b#build: built-b" in result.stdout


def _start_order(workspace: VxWorkspace, *args: str) -> list[str]:
    order = workspace.path / "order.txt"
    order.unlink(missing_ok=True)
    result = workspace.run(*args)
    assert result.exit_code == 0, result.output
    return order.read_text().split()


def test_task_priorities_change_the_start_order(
    vx_workspace: MakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "vxt_priorities"
    files = {
        **root(),
        **projects("a", "b", "c", cmd='echo {name} >> "$VX_WORKSPACE_ROOT/order.txt"'),
        f"{name}.py": module(
            """
            @vx.hookimpl
            def vx_task_priorities(graph, config):
                return {"c#build": 10.0, "b#build": 5.0}
            """
        ),
    }
    workspace = vx_workspace(files)
    monkeypatch.syspath_prepend(str(workspace.path))  # for -p NAME
    assert _start_order(workspace, "run", "build", "-j", "1") == ["a", "b", "c"]
    assert _start_order(workspace, "-p", name, "run", "build", "-j", "1") == ["c", "b", "a"]


def test_modify_graph_can_add_an_edge(
    vx_workspace: MakeWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "vxt_edges"
    files = {
        **root(),
        **projects("a", "b"),
        f"{name}.py": module(
            """
            @vx.hookimpl
            def vx_modify_graph(graph, config):
                if "a#build" in graph.tasks and "b#build" in graph.tasks:
                    graph.add_dependency("a#build", "b#build")
            """
        ),
    }
    workspace = vx_workspace(files)
    monkeypatch.syspath_prepend(str(workspace.path))  # for -p NAME

    def edges(*args: str) -> dict[str, list[str]]:
        result = workspace.run(*args, "graph", "build", "--format=json")
        assert result.exit_code == 0, result.output
        return {t["id"]: t["dependencies"] for t in json.loads(result.stdout)["tasks"]}

    assert edges() == {"a#build": [], "b#build": []}
    assert edges("-p", name) == {"b#build": [], "a#build": ["b#build"]}

    result = workspace.run("-p", name, "run", "build", "-j", "2")
    assert result.exit_code == 0, result.output
    assert result.task("a#build")["dependencies"] == ["b#build"]
    assert list(result.outcomes) == ["b#build", "a#build"]
