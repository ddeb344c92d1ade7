"""Hooks of the ``mcp`` plugin (thin: the SDK is imported only when ``vx mcp`` runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import argparse

    from vx import CommandRegistry, Config


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "mcp",
        help="serve the workspace to coding agents over the Model Context Protocol (stdio)",
        handler=_mcp_command,
        # A workspace with a configuration error still gets a server: each tool call
        # returns the error, so an agent can read it and fix the file.
        needs_workspace=False,
        configure=_configure_parser,
    )


def _configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-run",
        action="store_true",
        help="also offer the `run` tool, which runs tasks (default: read-only tools only)",
    )


def _mcp_command(config: Config) -> int:
    try:
        from vx_mcp.server import VxTools, build_server
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("mcp"):
            raise
        raise vx.PluginError(
            "vx mcp needs the MCP SDK, which is not installed; fix: pip install 'vx-build[mcp]'"
        ) from None
    history = config.pluginmanager.get_plugin("history") is not None
    tools = VxTools(
        config.invocation_dir,
        allow_run=config.option.allow_run,
        history=history,
        plugins=list(config.option.plugins),
    )
    build_server(tools).run("stdio")
    return 0
