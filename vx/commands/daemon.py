"""Built-in plugin ``daemon``: ``vx daemon status|start|stop|restart|logs`` (the warm server,
see docs/daemon.md)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import argparse

    from vx.cli import CommandRegistry
    from vx.config import Config


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "daemon",
        help="the workspace's warm server: status, start, stop, restart, logs",
        handler=daemon_command,
        configure=_arguments,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=["status", "start", "stop", "restart", "logs"], help="what to do"
    )
    parser.add_argument("--json", action="store_true", help="status as JSON")


def daemon_command(config: Config) -> int:
    from vx.daemon import control
    from vx.daemon.client import server_paths

    root = config.require_root()
    paths = server_paths(str(root))
    action = config.option.action
    out = sys.stdout
    if action == "logs":
        try:
            with open(paths.log, encoding="utf-8", errors="replace") as log:
                out.write(log.read())
        except FileNotFoundError:
            sys.stderr.write(f"vx daemon: no log yet ({paths.log})\n")
        return 0
    if action in ("stop", "restart"):
        pid = control.stop(root)
        if action == "stop":
            out.write(f"stopped the warm server (pid {pid})\n" if pid else "no warm server\n")
            return 0
    if action in ("start", "restart"):
        status = control.start(root)
        if status is None:
            sys.stderr.write(
                f"vx: error: the warm server did not start; see {paths.log} (vx daemon logs)\n"
            )
            return 1
        out.write(f"warm server running (pid {status['pid']}, socket {status['socket']})\n")
        return 0
    status = control.ask(paths, "status")
    if config.option.json:
        out.write(json.dumps(status or {"running": False}) + "\n")
    elif status is None:
        out.write(f"no warm server for {root}\n")
    else:
        out.write(
            f"warm server for {status['root']}\n"
            f"  pid          {status['pid']}\n"
            f"  vx           {status['version']} ({status['python']})\n"
            f"  uptime       {status['uptime']:.0f} s (idle timeout {status['idle_timeout']:g} s)\n"
            f"  requests     {status['requests']} ({status['served']} served)\n"
            f"  memory       {status['rss_bytes'] / 2**20:.0f} MB RSS\n"
            f"  file state   {_file_state(status.get('files'))}\n"
            f"  socket       {status['socket']}\n"
            f"  log          {status['log']}\n"
        )
    return 0 if status is not None else 1


def _file_state(files: object) -> str:
    """``watched, 5400 files kept (git listing kept, 0 rescans)`` or why not."""
    if not isinstance(files, dict):
        return "not kept"
    if files.get("state") != "watching":
        return f"not kept: {files.get('reason')}"
    listing = ", git listing kept" if files.get("listing") else ""
    return f"watched, {files.get('files')} files kept ({files.get('rescans')} rescans{listing})"
