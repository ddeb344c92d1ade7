"""``vx init``: detect, show the diff, confirm, write, then check with ``vx graph`` and
``vx run --dry``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vx import Config, UsageError
from vx_init.edit import FileChange, changes, unified_diff
from vx_init.propose import find_root, propose

__all__ = ["run_init"]


def run_init(config: Config) -> int:
    out = sys.stdout
    root = find_root(config.invocation_dir, config.root)
    proposal = propose(root)
    file_changes = changes(proposal)
    out.write(f"vx init: {root}\n")
    out.write(f"found: {', '.join(proposal.detected) or 'nothing to translate'}\n")
    if proposal.notes:
        out.write("\nnot translated:\n")
        out.writelines(f"  - {note}\n" for note in dict.fromkeys(proposal.notes))
    if not file_changes:
        out.write("\nnothing to change: the configuration already has everything vx init finds\n")
        return 0
    out.write("\n")
    for change in file_changes:
        out.write(unified_diff(change, root))
    if config.option.dry:
        out.write(f"\n(dry run: {len(file_changes)} file(s) would change; nothing written)\n")
        return 0
    if not config.option.yes and not _confirm(len(file_changes)):
        out.write("nothing written\n")
        return 1
    for change in file_changes:
        _write(change)
    out.write(f"\nwrote {len(file_changes)} file(s)\n")
    return _check(root)


def _confirm(count: int) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(
            "vx init: no terminal to confirm the changes; pass --yes to write them, "
            "or --dry to only print them"
        )
    sys.stdout.write(f"\nwrite {count} file(s)? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _write(change: FileChange) -> None:
    temporary = change.path.with_name(f".{change.path.name}.{os.getpid()}.tmp")
    temporary.write_text(change.after)
    if change.before is not None:
        os.chmod(temporary, change.path.stat().st_mode & 0o7777)
    os.replace(temporary, change.path)


def _vx(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vx", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _check(root: Path) -> int:
    """Show that the written configuration loads: the graph, and the plan of every task."""
    out = sys.stdout
    graph = _vx(root, "graph", "--format=json")
    if graph.returncode != 0:
        out.write(f"\nvx graph failed; fix the configuration:\n{graph.stderr}")
        return graph.returncode
    tasks = json.loads(graph.stdout)["tasks"]
    projects = sorted({task["project"] for task in tasks})
    names = sorted({task["task"] for task in tasks})
    out.write(f"\nvx graph: {len(tasks)} task(s) in {len(projects)} project(s)\n")
    text = _vx(root, "graph").stdout.splitlines()
    out.writelines(f"  {line}\n" for line in text[:40])
    if len(text) > 40:
        out.write(f"  ... ({len(text) - 40} more; run vx graph)\n")
    if not names:
        out.write("no tasks yet: add [tool.vx.tasks.<name>] tables (see docs/configuration.md)\n")
        return 0
    dry = _vx(root, "run", *names, "--dry=json")
    if dry.returncode != 0:
        out.write(f"\nvx run --dry failed; fix the configuration:\n{dry.stderr}")
        return dry.returncode
    plan = json.loads(dry.stdout)["tasks"]
    hits = sum(1 for task in plan if task["cache"]["status"] == "hit")
    out.write(
        f"vx run {' '.join(names)} --dry: {len(plan)} task(s) planned, {hits} cache hit(s)\n"
        f"\nnext: vx run {' '.join(names)}\n"
    )
    return 0
