"""Built-in plugin ``plugins``: the ``vx plugins`` command."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import vx
from vx.plugin_manager import plugin_hooks

if TYPE_CHECKING:
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "plugins",
        help="list loaded plugins and the hooks they implement",
        handler=plugins_command,
        needs_workspace=False,
    )


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option("--json", action="store_true", command="plugins", help="print JSON")


def plugins_command(config: Config) -> int:
    pm = config.pluginmanager
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        info = pm.infos.get(name)
        if info is None:
            continue
        rows.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "source": info.source,
                "hooks": plugin_hooks(pm, plugin),
            }
        )
    if config.option.json:
        sys.stdout.write(json.dumps({"plugins": rows}, indent=2) + "\n")
        return 0
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "-"
        sys.stdout.write(f"{row['name']:<12} {origin:<22} {row['source']:<16} {row['module']}\n")
        sys.stdout.write(f"{'':<12} hooks: {', '.join(row['hooks']) or '-'}\n")
    return 0
