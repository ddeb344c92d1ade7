"""The ``vx mcp`` server: MCP tools over stdio that answer with vx's own JSON documents.

Every tool call runs ``vx -C <directory> ... --json`` as a child process, so an answer always
reflects the workspace as it is on disk (no cached graph can go stale between two calls), a
configuration error in the workspace is the CLI's own message returned as a tool error, and
nothing a task prints can reach the protocol stream on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

import vx

__all__ = ["READ_TIMEOUT", "VxTools", "build_server"]

#: Seconds a read-only tool may take (a cold plan of a large workspace hashes every input).
READ_TIMEOUT = 600.0
#: Seconds vx gets to stop its tasks after SIGTERM when a call is cancelled or times out.
STOP_GRACE = 15.0
#: Characters of task output returned by ``run`` (the end, where failures usually are).
OUTPUT_TAIL = 8000

Limit = Annotated[int, Field(ge=1, le=1000, description="at most this many entries")]
Names = Annotated[
    list[str],
    Field(description="task names (test) or task ids (project#test)", min_length=1, max_length=100),
]
Filters = Annotated[
    list[str] | None,
    Field(
        description="project filters as in vx --filter: NAME, glob, NAME..., ...NAME, !NAME, [REV]",
        max_length=50,
    ),
]


def _bounded(items: list[Any], limit: int) -> dict[str, Any]:
    return {"total": len(items), "truncated": len(items) > limit, "items": items[:limit]}


async def _stop(process: Any) -> None:
    """SIGTERM (vx cancels its running tasks), then SIGKILL after :data:`STOP_GRACE` s."""
    if process.returncode is not None:
        return
    process.terminate()
    with anyio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()


def _error_message(stderr: str, code: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("vx: error: ") for line in lines if line.startswith("vx: error:")]
    detail = "; ".join(errors) or "\n".join(lines[-20:]) or "no message"
    return f"{detail} (vx exit code {code})"


class VxTools:
    """The tools, bound to one directory (``vx -C``) and one interpreter."""

    def __init__(
        self, directory: Path, *, allow_run: bool, history: bool, plugins: list[str]
    ) -> None:
        self.directory = directory
        self.allow_run = allow_run
        self.has_history = history
        self.plugin_args = [arg for name in plugins for arg in ("-p", name)]
        """The server's own ``-p`` options, given to every vx child as well."""

    async def _vx(self, *args: str, timeout: float = READ_TIMEOUT) -> tuple[int, str, str]:
        """Run ``vx -C DIR ARGS``; ``(exit code, stdout, stderr)``.

        The child never sees the server's stdin (the protocol stream). When the call is
        cancelled or times out, vx gets SIGTERM, so it stops its tasks the way Ctrl-C does,
        and SIGKILL only if it has not exited after a grace period."""
        command = [sys.executable, "-m", "vx", "-C", str(self.directory), *self.plugin_args, *args]
        env = {**os.environ, "NO_COLOR": "1"}
        process = await anyio.open_process(command, stdin=subprocess.DEVNULL, env=env)
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

        async def drain(stream: Any, into: list[bytes]) -> None:
            async for chunk in stream:
                into.append(chunk)

        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as group:
                    group.start_soon(drain, process.stdout, chunks["stdout"])
                    group.start_soon(drain, process.stderr, chunks["stderr"])
                    await process.wait()
        except TimeoutError:
            with anyio.CancelScope(shield=True):
                await _stop(process)
            raise ToolError(f"vx {' '.join(args)} took longer than {timeout:.0f} s") from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _stop(process)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await process.aclose()
        return (
            process.returncode if process.returncode is not None else 1,
            b"".join(chunks["stdout"]).decode(errors="replace"),
            b"".join(chunks["stderr"]).decode(errors="replace"),
        )

    async def _json(self, *args: str) -> Any:
        code, stdout, stderr = await self._vx(*args)
        if code != 0:
            raise ToolError(_error_message(stderr, code))
        try:
            return json.loads(stdout)
        except ValueError:
            raise ToolError(f"vx {' '.join(args)} printed no JSON: {stdout[-500:]!r}") from None

    @staticmethod
    def _selection(
        tasks: list[str], filters: list[str] | None, affected: bool, base: str | None
    ) -> list[str]:
        for value in [*tasks, *(filters or []), base or ""]:
            if value.startswith("-") or "\n" in value or "\x00" in value:
                raise ToolError(f"invalid task, filter or revision {value!r}")
        args = list(tasks)
        # The tools answer for the whole workspace: without a selection, --filter=* keeps
        # vx from scoping to the member directory the server was started in.
        args += [f"--filter={spec}" for spec in filters or ([] if affected else ["*"])]
        if affected:
            args.append("--affected")
        if base:
            args.append(f"--base={base}")
        return args

    # -- read-only tools ---------------------------------------------------------------

    async def projects(self, limit: Limit = 200) -> dict[str, Any]:
        """The workspace's projects with a task: name, path (relative to the workspace
        root), project dependencies and task names."""
        document = await self._json("graph", "--format=json", "--filter=*")
        return {"workspace": document["workspace"], **_bounded(document["projects"], limit)}

    async def graph(
        self,
        tasks: Annotated[list[str], Field(max_length=100)] | None = None,
        filter: Filters = None,
        affected: bool = False,
        base: str | None = None,
        limit: Limit = 500,
    ) -> dict[str, Any]:
        """The task graph that `vx run TASKS` would run (every task when TASKS is empty),
        in topological order: id, project, task, dependencies, dependents."""
        args = self._selection(tasks or [], filter, affected, base)
        document = await self._json("graph", "--format=json", *args)
        return _bounded(document["tasks"], limit)

    async def plan(
        self,
        tasks: Names,
        filter: Filters = None,
        affected: bool = False,
        base: str | None = None,
        limit: Limit = 200,
    ) -> dict[str, Any]:
        """The dry-run plan of `vx run TASKS`: each task's command, dependencies, outputs,
        cache key and predicted cache status (hit with its source, miss with the reason)."""
        args = self._selection(tasks, filter, affected, base)
        document = await self._json("run", *args, "--dry=json")
        entries = document.get("tasks", [])
        counts: dict[str, int] = {}
        for entry in entries:
            status = entry["cache"]["status"]
            counts[status] = counts.get(status, 0) + 1
        keep = ("id", "command", "cwd", "dependencies", "outputs", "hash", "cache")
        trimmed = [{key: entry.get(key) for key in keep} for entry in entries]
        return {
            "concurrency": document.get("concurrency"),
            "cache_counts": counts,
            **_bounded(trimmed, limit),
        }

    async def why(
        self, task: Annotated[str, Field(description="a task id: project#task")]
    ) -> dict[str, Any]:
        """Whether a task would hit the cache and, for a miss, what changed since its last
        cached run (files, env names, dependencies, command)."""
        if task.startswith("-") or "#" not in task:
            raise ToolError(f"expected a task id PROJECT#TASK, got {task!r}")
        document: dict[str, Any] = await self._json("why", task, "--json")
        changes = document.get("changes", [])
        document["changes"] = changes[:200]
        document["changes_truncated"] = len(changes) > 200
        return document

    async def cache_stats(self) -> dict[str, Any]:
        """Local cache statistics: directory, entries, total size, hit rate of recent runs."""
        result: dict[str, Any] = await self._json("cache", "stats", "--json")
        return result

    async def history(
        self,
        task_glob: Annotated[
            str | None, Field(description="per-task statistics for these tasks, e.g. '*#test'")
        ] = None,
        since: Annotated[str | None, Field(description="an age (12h, 7d) or a date")] = None,
        branch: Annotated[str | None, Field(description="only runs on this git branch")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="the newest N runs")] = 20,
    ) -> dict[str, Any]:
        """Run history (`vx history --json`): the recent runs, or with TASK_GLOB per-task
        statistics (p50/p90/p99 durations, success and cache-hit rates, flaky counts)."""
        args = [task_glob] if task_glob else []
        args += [f"--since={since}"] if since else []
        args += [f"--branch={branch}"] if branch else []
        for value in args:
            if value.startswith("-") and not value.startswith(("--since=", "--branch=")):
                raise ToolError(f"invalid task glob {value!r}")
        document: dict[str, Any] = await self._json("history", *args, "--json", f"--limit={limit}")
        if isinstance(document.get("tasks"), list):
            tasks = document.pop("tasks")
            document.update(_bounded(tasks, 200))
        return document

    # -- running (only with --allow-run) -------------------------------------------------

    async def run(
        self,
        tasks: Names,
        filter: Filters = None,
        affected: bool = False,
        base: str | None = None,
        force: Annotated[bool, Field(description="ignore cache reads")] = False,
        limit: Limit = 200,
    ) -> dict[str, Any]:
        """Run `vx run TASKS` and return its summary: exit code, counts by status, each
        task's status, duration and cache result, and the end of the output."""
        args = self._selection(tasks, filter, affected, base)
        with tempfile.TemporaryDirectory(prefix="vx-mcp-") as scratch:
            summary_path = Path(scratch) / "summary.json"
            extra = ["--force"] if force else []
            code, stdout, stderr = await self._vx(
                "run", *args, *extra, f"--summarize={summary_path}", timeout=24 * 3600
            )
            if not summary_path.is_file():
                raise ToolError(_error_message(stderr, code))
            summary = json.loads(summary_path.read_text())
        output = stdout + stderr
        keep = ("id", "status", "exit_code", "duration_ms", "cache")
        entries = [{key: entry.get(key) for key in keep} for entry in summary.get("tasks", [])]
        return {
            "run_id": summary.get("run_id"),
            "exit_code": summary.get("exit_code"),
            "duration_ms": summary.get("duration_ms"),
            "interrupted": summary.get("interrupted"),
            "counts": summary.get("counts"),
            **_bounded(entries, limit),
            "output_tail": output[-OUTPUT_TAIL:],
            "output_truncated": len(output) > OUTPUT_TAIL,
        }


def build_server(tools: VxTools) -> MCPServer:
    server = MCPServer(
        name="vx",
        version=vx.__version__,
        instructions=(
            "vx is the build system and task runner of this Python monorepo. Use these tools "
            "to list projects and tasks, see the task graph, the dry-run plan with predicted "
            "cache hits, and why a task would miss the cache"
            + (", and to run tasks." if tools.allow_run else ". Running tasks is disabled.")
        ),
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    server.add_tool(tools.projects, name="projects", annotations=read_only)
    server.add_tool(tools.graph, name="graph", annotations=read_only)
    server.add_tool(tools.plan, name="plan", annotations=read_only)
    server.add_tool(tools.why, name="why", annotations=read_only)
    server.add_tool(tools.cache_stats, name="cache_stats", annotations=read_only)
    if tools.has_history:
        server.add_tool(tools.history, name="history", annotations=read_only)
    if tools.allow_run:
        server.add_tool(
            tools.run,
            name="run",
            annotations=ToolAnnotations(
                read_only_hint=False, destructive_hint=False, open_world_hint=False
            ),
        )
    return server
