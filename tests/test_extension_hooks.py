"""The replaceable hooks, implemented the way a third-party distribution would: a package
with a ``vx`` entry point, installed (a ``*.dist-info`` directory on ``PYTHONPATH``) and
discovered by a real ``vx`` child process. Each plugin types its hooks with names from ``vx``
only."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from typing import Any

from vx.testing import RunResult, VxWorkspace

MakeWorkspace = Callable[..., VxWorkspace]

ROOT = {"pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}}}


def installed(dist: str, package: str, hooks: str, **modules: str) -> dict[str, str]:
    """Files of an installed distribution ``dist`` whose entry point ``<name>`` (``dist``
    minus ``vx-``) is ``<package>.hooks``; put ``site/`` on ``PYTHONPATH``."""
    name = dist.removeprefix("vx-")
    info = f"site/{dist.replace('-', '_')}-1.0.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n",
        f"{info}/entry_points.txt": f"[vx]\n{name} = {package}.hooks\n",
        f"site/{package}/__init__.py": "",
        f"site/{package}/hooks.py": textwrap.dedent(hooks),
    }
    for module, body in modules.items():
        files[f"site/{package}/{module}.py"] = textwrap.dedent(body)
    return files


def project(name: str, tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        f"packages/{name}/pyproject.toml": {
            "project": {"name": name},
            "tool": {"vx": {"tasks": tasks}},
        }
    }


def run(workspace: VxWorkspace, *args: str, **env: str) -> RunResult:
    return workspace.run_subprocess(*args, env={"PYTHONPATH": str(workspace.path / "site"), **env})


# -- vx_executor -------------------------------------------------------------------------------

EXECUTOR = """
    from __future__ import annotations

    import json
    from pathlib import Path
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import CommandSpec, Config, OutputCallback, Task


    class JournalExecutor:
        \"\"\"Runs nothing: records each command and answers from a table of exit codes.\"\"\"

        def __init__(self, journal: Path) -> None:
            self.journal = journal

        async def execute(self, task: Task, spec: CommandSpec, on_output: OutputCallback) -> int:
            with self.journal.open("a") as handle:
                handle.write(json.dumps({"task": task.id, "argv": spec.argv}) + "\\n")
            on_output(f"journaled {task.id}\\n".encode())
            return 3 if task.project.name == "bad" else 0


    @vx.hookimpl(tryfirst=True)
    def vx_executor(config: Config) -> vx.Executor:
        return JournalExecutor(config.require_root() / "journal.jsonl")
"""


def test_a_custom_executor_runs_the_commands(vx_workspace: MakeWorkspace) -> None:
    workspace = vx_workspace(
        {
            **ROOT,
            **project("a", {"build": {"cmd": "touch spawned", "outputs": []}}),
            **project("bad", {"build": {"cmd": ["false", "--really"]}}),
            **installed("vx-journal", "vx_journal", EXECUTOR),
        }
    )
    result = run(workspace, "run", "build", "--continue")
    assert result.exit_code == 3, result.output
    assert result.outcomes == {"a#build": "success", "bad#build": "failed"}
    result.fnmatch_lines(["a#build: journaled a#build"], stream="stdout")
    journal = [
        json.loads(line) for line in (workspace.path / "journal.jsonl").read_text().splitlines()
    ]
    assert sorted(journal, key=lambda entry: entry["task"]) == [
        {"task": "a#build", "argv": ["/bin/sh", "-c", "touch spawned"]},
        {"task": "bad#build", "argv": ["false", "--really"]},
    ]
    assert not (workspace.path / "packages" / "a" / "spawned").exists()  # nothing was spawned
    # Results of the custom executor are cached like any other.
    again = run(workspace, "run", "a#build")
    assert again.outcomes == {"a#build": "cached"}
    assert len((workspace.path / "journal.jsonl").read_text().splitlines()) == 2


# -- vx_load_workspace -------------------------------------------------------------------------

LOADER = """
    from __future__ import annotations

    import json
    from pathlib import Path
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import Config


    @vx.hookimpl(tryfirst=True)
    def vx_load_workspace(root: Path, config: Config) -> vx.Workspace | None:
        \"\"\"Projects and tasks from ``tasks.json`` instead of pyproject files.\"\"\"
        file = root / "tasks.json"
        if not file.exists():
            return None
        data = json.loads(file.read_text())
        projects = {}
        for name, spec in data.items():
            tasks = {
                task: vx.TaskDefinition(name=task, cmd=cmd, depends_on=("^" + task,))
                for task, cmd in spec["tasks"].items()
            }
            projects[name] = vx.Project(
                name=name,
                path=root / spec["dir"],
                relpath=spec["dir"],
                dependencies=tuple(spec.get("needs", ())),
                tasks=tasks,
            )
        files = (root / "pyproject.toml", file)
        return vx.Workspace(root=root, projects=projects, config_files=files)
"""


def test_a_workspace_loader_replaces_pyproject_reading(vx_workspace: MakeWorkspace) -> None:
    tasks = {
        "lib": {"dir": "lib", "tasks": {"build": "echo lib > out.txt"}},
        "app": {"dir": "app", "tasks": {"build": "cat ../lib/out.txt"}, "needs": ["lib"]},
    }
    workspace = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {}}},
            "tasks.json": json.dumps(tasks),
            "lib/.keep": "",
            "app/.keep": "",
            **installed("vx-jsonws", "vx_jsonws", LOADER),
        }
    )
    graph = run(workspace, "graph", "build", "--format=json")
    assert graph.exit_code == 0, graph.output
    edges = {task["id"]: task["dependencies"] for task in json.loads(graph.stdout)["tasks"]}
    assert edges == {"lib#build": [], "app#build": ["lib#build"]}

    result = run(workspace, "run", "build")
    assert result.exit_code == 0, result.output
    assert list(result.outcomes) == ["lib#build", "app#build"]
    result.fnmatch_lines(["app#build: lib"], stream="stdout")

    # The loader lists tasks.json among its config files: editing it is seen on the next run
    # (the cached workspace is not reused).
    tasks["app"]["tasks"]["build"] = "echo changed"
    (workspace.path / "tasks.json").write_text(json.dumps(tasks))
    changed = run(workspace, "run", "app#build")
    changed.fnmatch_lines(["app#build: changed"], stream="stdout")


# -- vx_cache_layers ---------------------------------------------------------------------------

LAYER = """
    from __future__ import annotations

    from pathlib import Path
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import Config


    class DirectoryLayer(vx.CacheLayer):
        \"\"\"Artifacts as files in a directory; ``delete`` and ``info_many`` keep the
        defaults of the base class.\"\"\"

        def __init__(self, name: str, directory: Path, local: bool) -> None:
            self.name = name
            self.directory = directory
            self.local = local

        def get(self, key: str) -> vx.Artifact | None:
            path = self.directory / key
            if not path.exists():
                return None
            return vx.Artifact(key=key, data=path.read_bytes())

        def put(self, key: str, artifact: vx.Artifact) -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / key).write_bytes(artifact.data)


    @vx.hookimpl
    def vx_cache_layers(config: Config) -> list[vx.CacheLayer]:
        import os

        local = os.environ.get("DIRLAYER_LOCAL") == "1"
        return [DirectoryLayer("shelf", Path(os.environ["DIRLAYER_DIR"]), local)]
"""


def test_a_cache_layer_from_an_installed_plugin(vx_workspace: MakeWorkspace, tmp_path: Any) -> None:
    shelf = tmp_path / "shelf"
    files = {
        **ROOT,
        **project(
            "a",
            {"build": {"cmd": "mkdir -p dist && echo made > dist/a.txt", "outputs": ["dist/**"]}},
        ),
        **installed("vx-shelf", "vx_shelf", LAYER),
    }
    producer = vx_workspace(files)
    first = run(producer, "run", "build", DIRLAYER_DIR=str(shelf))
    assert first.outcomes == {"a#build": "success"}
    assert len(list(shelf.iterdir())) == 1  # uploaded to the shelf

    # Another checkout, empty local cache: the shelf is a remote layer, read after local.
    consumer = vx_workspace(files)
    hit = run(consumer, "run", "build", DIRLAYER_DIR=str(shelf))
    assert hit.outcomes == {"a#build": "cached"}, hit.output
    cache = hit.task("a#build")["cache"]
    assert (cache["status"], cache["source"], cache["layer"]) == ("hit", "remote", "shelf")
    assert (consumer.path / "packages/a/dist/a.txt").read_text() == "made\n"
    # The remote hit was written to the local layer: the next run hits locally.
    local = run(consumer, "run", "build", "--cache=local:r", DIRLAYER_DIR=str(shelf))
    assert local.task("a#build")["cache"]["layer"] == "local"

    # Without the built-in local cache, a layer declaring ``local`` is read first and its
    # hits are local ones.
    other = vx_workspace(files)
    env = {"DIRLAYER_DIR": str(tmp_path / "disk"), "DIRLAYER_LOCAL": "1"}
    assert run(other, "-p", "no:cache", "run", "build", **env).outcomes == {"a#build": "success"}
    again = run(other, "-p", "no:cache", "run", "build", **env)
    cache = again.task("a#build")["cache"]
    assert (cache["status"], cache["source"], cache["layer"]) == ("hit", "local", "shelf")


def test_a_cache_layer_must_be_a_cache_layer(vx_workspace: MakeWorkspace) -> None:
    hooks = """
        import vx

        @vx.hookimpl
        def vx_cache_layers(config):
            return [object()]
    """
    workspace = vx_workspace(
        {**ROOT, **project("a", {"build": {"cmd": "true"}}), **installed("vx-odd", "vx_odd", hooks)}
    )
    result = run(workspace, "run", "build")
    assert result.exit_code == 78
    result.fnmatch_lines(
        [
            "vx: error: plugin 'odd' (vx-odd 1.0) returned <object object at *> from "
            "vx_cache_layers: cache layers must subclass vx.CacheLayer"
        ],
        stream="stderr",
    )
    result.no_fnmatch_line("Traceback*")


# -- vx_addhooks -------------------------------------------------------------------------------

HERALD_SPECS = """
    import pluggy

    hookspec = pluggy.HookspecMarker("vx")


    @hookspec
    def vx_herald_announce(task_id: str, status: str) -> str | None:
        \"\"\"Called by the herald plugin for each finished task; return a line to print.\"\"\"
"""

HERALD = """
    from __future__ import annotations

    import sys
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import RunInfo, TaskResult, VxPluginManager

    _manager: list[VxPluginManager] = []


    @vx.hookimpl
    def vx_addhooks(pluginmanager: VxPluginManager) -> None:
        from vx_herald import specs

        pluginmanager.add_hookspecs(specs)
        _manager.append(pluginmanager)


    @vx.hookimpl
    def vx_task_finish(result: TaskResult, run: RunInfo) -> None:
        hook = _manager[0].hook.vx_herald_announce
        for line in hook(task_id=result.task.id, status=result.status.value):
            sys.stdout.write(f"herald: {line}\\n")
"""

LISTENER = """
    import vx


    @vx.hookimpl(optionalhook=True)
    def vx_herald_announce(task_id: str, status: str) -> str:
        return f"{task_id} is {status}"
"""


def test_a_plugin_adds_hooks_for_other_plugins(vx_workspace: MakeWorkspace) -> None:
    workspace = vx_workspace(
        {
            **ROOT,
            **project("a", {"build": {"cmd": "true"}}),
            **installed("vx-herald", "vx_herald", HERALD, specs=HERALD_SPECS),
            **installed("vx-listener", "vx_listener", LISTENER),
        }
    )
    result = run(workspace, "run", "build")
    assert result.exit_code == 0, result.output
    result.fnmatch_lines(["herald: a#build is success"], stream="stdout")
    plugins = run(workspace, "plugins", "--json")
    rows = {row["name"]: row for row in json.loads(plugins.stdout)["plugins"]}
    assert rows["listener"]["hooks"] == ["vx_herald_announce"]
    # Without the plugin that declares it, the optional hook is simply never called.
    alone = run(workspace, "-p", "no:herald", "run", "build")
    assert alone.exit_code == 0, alone.output
    alone.no_fnmatch_line("herald:*")


SLOW_LAYER = """
    from __future__ import annotations

    import time
    from pathlib import Path
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import Config


    class SlowLayer(vx.CacheLayer):
        \"\"\"A local layer whose writes take a while (announced by a file).\"\"\"

        name = "slow"
        local = True

        def __init__(self, root: Path) -> None:
            self.root = root

        def get(self, key: str) -> vx.Artifact | None:
            return None

        def put(self, key: str, artifact: vx.Artifact) -> None:
            (self.root / "saving").touch()
            time.sleep(3)


    @vx.hookimpl
    def vx_cache_layers(config: Config) -> list[vx.CacheLayer]:
        return [SlowLayer(config.require_root())]
"""


def test_interrupted_while_a_result_is_saved(vx_workspace: MakeWorkspace) -> None:
    """Ctrl-C while a finished task is being stored: exit 130, the task counts as passed,
    no traceback."""
    import signal
    import time

    workspace = vx_workspace(
        {
            **ROOT,
            **project("a", {"build": {"cmd": "true"}}),
            **project("b", {"build": {"cmd": "sleep 30"}}),
            **installed("vx-slow", "vx_slow", SLOW_LAYER),
        }
    )
    process = workspace.popen(
        "-p",
        "no:cache",
        "run",
        "build",
        "-j",
        "2",
        "--summarize=summary.json",
        env={"PYTHONPATH": str(workspace.path / "site")},
    )
    deadline = time.monotonic() + 60
    while not (workspace.path / "saving").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads((workspace.path / "summary.json").read_text())
    statuses = {task["id"]: task["status"] for task in summary["tasks"]}
    assert statuses == {"a#build": "success", "b#build": "cancelled"}


# -- vx_graph_hash_components / vx_task_hash_components ----------------------------------------

COMPONENTS = """
    from __future__ import annotations

    import os
    from typing import TYPE_CHECKING

    import vx

    if TYPE_CHECKING:
        from vx import Config, Task, TaskGraph

    CALLS = os.environ["COMPONENT_CALLS"]


    def _count(name: str) -> None:
        with open(CALLS, "a") as handle:
            handle.write(name + "\\n")


    @vx.hookimpl
    def vx_graph_hash_components(graph: TaskGraph, config: Config) -> dict[str, dict[str, str]]:
        _count("graph")
        # Only a#build gets the batched component.
        return {"a#build": {"batch.flavour": os.environ.get("FLAVOUR", "plain")}}


    @vx.hookimpl
    def vx_task_hash_components(task: Task, config: Config) -> dict[str, str] | None:
        _count("task")
        if task.project.name != "b":
            return None
        return {"batch.colour": os.environ.get("COLOUR", "red")}
"""


def test_batched_and_per_task_key_components(vx_workspace: MakeWorkspace, tmp_path: Any) -> None:
    files = {
        **ROOT,
        **project("a", {"build": {"cmd": "echo a"}}),
        **project("b", {"build": {"cmd": "echo b"}}),
        **installed("vx-batch", "vx_batch", COMPONENTS),
    }
    ws = vx_workspace(files)
    calls = tmp_path / "calls.txt"

    def keyed(**env: str) -> dict[str, str]:
        calls.write_text("")
        result = run(ws, "run", "build", "--dry=json", COMPONENT_CALLS=str(calls), **env)
        assert result.exit_code == 0, result.output
        return {task["id"]: task["hash"] for task in json.loads(result.stdout)["tasks"]}

    base = keyed()
    # One batched call per run; the per-task hook once per task.
    assert sorted(calls.read_text().split()) == ["graph", "task", "task"]
    flavoured = keyed(FLAVOUR="spicy")
    assert flavoured["a#build"] != base["a#build"]
    assert flavoured["b#build"] == base["b#build"]
    coloured = keyed(COLOUR="blue")
    assert coloured["b#build"] != base["b#build"]
    assert coloured["a#build"] == base["a#build"]
    assert keyed() == base

    # The components are recorded in the stored manifest, so a miss names them.
    assert run(ws, "run", "build", COMPONENT_CALLS=str(calls)).exit_code == 0
    again = run(ws, "run", "build", COMPONENT_CALLS=str(calls), FLAVOUR="spicy")
    assert again.outcomes == {"a#build": "success", "b#build": "cached"}, again.output
    assert "batch.flavour" in again.task("a#build")["cache"]["reason"]
