"""``vx mcp`` driven by the MCP SDK's own client over stdio, against real workspaces: the tool
list, every tool, malformed arguments, a workspace with a configuration error, the optional
history tool and the message when the SDK is missing."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

# Not importorskip: the test extra installs mcp, and CI must fail loudly without it.
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from vx.testing import VxWorkspace

Make = Callable[..., VxWorkspace]
Session = Callable[[Client], Awaitable[None]]

FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
    "packages/core/pyproject.toml": (
        '[project]\nname = "core"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && cp src/a.py dist/a.py"\noutputs = ["dist/**"]\n'
    ),
    "packages/core/src/a.py": "A = 1\n",
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["core"]\n\n[tool.vx.tasks.build]\n'
        'cmd = "true"\ndepends_on = ["^build"]\n\n[tool.vx.tasks.test]\n'
        'cmd = "echo testing app; test -f ../core/dist/a.py"\ndepends_on = ["^build"]\n'
    ),
}


def _serve(
    ws: VxWorkspace, session: Session, *args: str, env: dict[str, str] | None = None
) -> None:
    """Start ``vx mcp ARGS`` in ``ws`` as the SDK's stdio client does, and run ``session``."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vx", "mcp", *args],
        cwd=str(ws.path),
        env={**os.environ, **(env or {})},
    )

    async def main() -> None:
        async with Client(params, cache=None, read_timeout_seconds=120) as client:
            await session(client)

    anyio.run(main)


async def _call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def _error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(name, arguments)
    assert result.is_error, result
    text = result.content[0]
    assert text.type == "text"
    return str(text.text)


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def test_read_only_tools(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)

    async def session(client: Client) -> None:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == {
            "projects",
            "graph",
            "plan",
            "why",
            "cache_stats",
            "history",  # the first-party history plugin is loaded
        }
        for tool in tools:
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is True
            assert tool.output_schema is not None
        projects = await _call(client, "projects", {})
        assert projects["workspace"] == str(ws.path)
        assert {p["name"]: p for p in projects["items"]} == {
            "core": {
                "name": "core",
                "path": "packages/core",
                "dependencies": [],
                "tasks": ["build"],
            },
            "app": {
                "name": "app",
                "path": "packages/app",
                "dependencies": ["core"],
                "tasks": ["build", "test"],
            },
        }
        graph = await _call(client, "graph", {"tasks": ["test"]})
        assert [t["id"] for t in graph["items"]] == ["core#build", "app#test"]
        assert graph["items"][1]["dependencies"] == ["core#build"]
        everything = await _call(client, "graph", {"limit": 2})
        assert everything["total"] == 3
        assert everything["truncated"] is True
        assert len(everything["items"]) == 2
        only_core = await _call(client, "graph", {"filter": ["core"]})
        assert [t["id"] for t in only_core["items"]] == ["core#build"]
        plan = await _call(client, "plan", {"tasks": ["build"]})
        assert plan["cache_counts"] == {"miss": 2}
        assert [t["id"] for t in plan["items"]] == ["core#build", "app#build"]
        assert plan["items"][0]["command"] == "mkdir -p dist && cp src/a.py dist/a.py"
        why = await _call(client, "why", {"task": "core#build"})
        assert why["status"] == "miss"
        assert why["changes"] == ["never ran before"]
        stats = await _call(client, "cache_stats", {})
        assert stats["entries"] == 0
        assert "run" not in await _tool_names(client)
        assert "Unknown tool" in await _error(client, "run", {"tasks": ["build"]})

    _serve(ws, session)
    assert not (ws.path / "packages/core/dist").exists()  # read-only: nothing ran


def test_the_bundled_example_workspace(tmp_path: Path) -> None:
    """examples/acme, started from a member directory: the root is found as vx finds it."""
    import shutil

    shutil.copytree(Path(__file__).parents[1] / "examples" / "acme", tmp_path / "acme")
    ws = VxWorkspace(tmp_path / "acme")
    member = next(p for p in (ws.path / "packages").iterdir() if (p / "pyproject.toml").is_file())

    async def session(client: Client) -> None:
        projects = await _call(client, "projects", {})
        assert projects["workspace"] == str(ws.path)
        names = {p["name"] for p in projects["items"]}
        assert "//" in names  # the root lints the workspace's scripts
        assert len(names) == 5
        plan = await _call(client, "plan", {"tasks": ["lint", "test", "build"]})
        assert plan["total"] == len(plan["items"]) == 13
        assert set(plan["cache_counts"]) <= {"miss", "hit"}

    params_dir = VxWorkspace(member)
    _serve(params_dir, session)


def test_allow_run_then_the_plan_predicts_hits(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)

    async def session(client: Client) -> None:
        assert "run" in await _tool_names(client)
        run = await _call(client, "run", {"tasks": ["test"]})
        assert run["exit_code"] == 0
        assert {t["id"]: t["status"] for t in run["items"]} == {
            "core#build": "success",
            "app#test": "success",
        }
        assert "testing app" in run["output_tail"]
        plan = await _call(client, "plan", {"tasks": ["test"]})
        assert plan["cache_counts"] == {"hit": 2}
        assert (await _call(client, "why", {"task": "app#test"}))["status"] == "hit"
        assert (await _call(client, "cache_stats", {}))["entries"] == 2
        (ws.path / "packages/core/src/a.py").write_text("A = 2\n")
        why = await _call(client, "why", {"task": "core#build"})  # the edit is seen at once
        assert why["status"] == "miss"
        assert "file modified: packages/core/src/a.py" in why["changes"]
        (ws.path / "packages/core/src/a.py").unlink()
        failed = await _call(client, "run", {"tasks": ["test"], "force": True})
        assert failed["exit_code"] != 0
        assert failed["counts"]["failed"] == 1
        assert "a.py" in failed["output_tail"]

    _serve(ws, session, "--allow-run")


def test_tasks_never_read_the_protocol_stream(vx_workspace: Make) -> None:
    """The server's stdin carries the protocol: neither the vx child nor its tasks may read it
    (a task reading stdin gets end-of-file)."""
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\n\n[tool.vx.tasks.read]\ncmd = "cat > got.txt; echo read-done"\n'
                "cache = false\n"
            )
        }
    )

    async def session(client: Client) -> None:
        run = await _call(client, "run", {"tasks": ["read"]})
        assert run["exit_code"] == 0, run
        assert "read-done" in run["output_tail"]
        assert (await _call(client, "graph", {}))["total"] == 1  # the protocol is intact

    _serve(ws, session, "--allow-run")
    assert (ws.path / "got.txt").read_bytes() == b""


def test_a_cancelled_run_stops_its_tasks(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\n\n[tool.vx.tasks.slow]\ncmd = "echo $$ > pid; exec sleep 300"\n'
                "cache = false\n"
            )
        }
    )
    pid_file = ws.path / "pid"

    async def session(client: Client) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "run", {"tasks": ["slow"]})
            while not pid_file.is_file() or not pid_file.read_text().strip():
                await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        pid = int(pid_file.read_text())
        with anyio.fail_after(60):  # a bound, not a measurement: SIGTERM reaches the task
            while _alive(pid):
                await anyio.sleep(0.05)
        assert (await _call(client, "graph", {}))["total"] == 1  # still serving

    _serve(ws, session, "--allow-run")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: it only waits for its parent to read its status.
    status = Path(f"/proc/{pid}/stat")
    return not (status.is_file() and status.read_text().split()[2] == "Z")


def test_malformed_arguments_are_tool_errors(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)

    async def session(client: Client) -> None:
        assert "tasks" in await _error(client, "graph", {"tasks": "test"})
        assert "tasks" in await _error(client, "plan", {"tasks": []})
        assert "tasks" in await _error(client, "plan", {})
        assert "limit" in await _error(client, "graph", {"limit": 0})
        assert "PROJECT#TASK" in await _error(client, "why", {"task": "core"})
        assert "invalid task" in await _error(client, "plan", {"tasks": ["--force"]})
        assert "invalid task" in await _error(client, "graph", {"filter": ["-x"]})
        unknown = await _error(client, "plan", {"tasks": ["tset"]})
        assert "no project has a task named 'tset' (did you mean 'test'?)" in unknown
        assert "vx exit code 2" in unknown
        assert "unknown project 'nope'" in await _error(client, "why", {"task": "nope#build"})
        # The server is still up and answering.
        assert (await _call(client, "graph", {}))["total"] == 3

    _serve(ws, session)


def test_a_workspace_with_a_config_error(vx_workspace: Make) -> None:
    ws = vx_workspace({**FILES, "pyproject.toml": '[tool.vx]\nmemebers = ["packages/*"]\n'})

    async def session(client: Client) -> None:
        assert "projects" in await _tool_names(client)
        message = await _error(client, "projects", {})
        assert "pyproject.toml: tool.vx.memebers: unknown key 'memebers'" in message
        assert "did you mean 'members'" in message
        assert "vx exit code 78" in message
        (ws.path / "pyproject.toml").write_text(FILES["pyproject.toml"])  # the agent fixes it
        assert (await _call(client, "projects", {}))["total"] == 2

    _serve(ws, session)


def test_history_tool_reads_the_run_history(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)

    async def session(client: Client) -> None:
        assert (await _call(client, "history", {}))["runs"] == []
        assert (await _call(client, "run", {"tasks": ["build"]}))["exit_code"] == 0
        assert (await _call(client, "run", {"tasks": ["build"]}))["exit_code"] == 0
        runs = (await _call(client, "history", {"limit": 1}))["runs"]
        assert len(runs) == 1  # the newest of the two
        stats = await _call(client, "history", {"task_glob": "core#*"})
        assert stats["task_glob"] == "core#*"
        assert [task["task_id"] for task in stats["items"]] == ["core#build"]
        assert stats["items"][0]["runs"] == 2
        assert "invalid task glob" in await _error(client, "history", {"task_glob": "-x"})

    _serve(ws, session, "--allow-run")


def test_without_the_history_plugin_there_is_no_history_tool(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)

    async def session(client: Client) -> None:
        assert "history" not in await _tool_names(client)
        assert "Unknown tool" in await _error(client, "history", {})
        # The children are started with the server's -p options: nothing records a run.
        assert (await _call(client, "run", {"tasks": ["build"]}))["exit_code"] == 0

    _serve(ws, session, "--allow-run", "-p", "no:history")
    assert not (ws.path / ".vx" / "history.db").exists()


def test_missing_sdk_is_a_clear_message(vx_workspace: Make, tmp_path: Path) -> None:
    ws = vx_workspace(FILES)
    shadow = tmp_path / "shadow" / "mcp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'mcp'\", name='mcp')\n"
    )
    result = ws.run_subprocess("mcp", env={"PYTHONPATH": str(shadow.parent)})
    assert result.exit_code == 78, result.output
    assert "vx mcp needs the MCP SDK" in result.stderr
    assert "pip install 'vx-build[mcp]'" in result.stderr
    assert "Traceback" not in result.output
