"""Hooks of the ``otel`` plugin (thin: OpenTelemetry is imported only when export is enabled)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import Config, Parser
    from vx_otel.deferred import DeferredExporter


_PLUGIN = "otel.exporter"
_EXPORTER: vx.StashKey[DeferredExporter] = vx.StashKey()
_INSTALL = "pip install 'vx-build[otel]'"


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_otel.settings import OtelSettings

    return {"otel": OtelSettings}


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--otel",
        action="store_true",
        default=False,
        command=("run", "replay"),
        help="export this run (or, with vx replay, the stored run) as an OpenTelemetry trace "
        f"(see [tool.vx.otel]; needs {_INSTALL})",
    )


def enabled_by(section: Any, option: Any, environ: Mapping[str, str]) -> str | None:
    """What enabled export for this invocation (named in messages), or None when it is off.

    ``OTEL_SDK_DISABLED=true`` turns it off whatever enabled it, as the OTel spec says."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if getattr(option, "otel", False):
        return "--otel"
    if section.enabled:
        return "VX_OTEL__ENABLED" if "VX_OTEL__ENABLED" in environ else "[tool.vx.otel] enabled"
    return None


def replay_enabled_by(option: Any, environ: Mapping[str, str]) -> str | None:
    """What asked ``vx replay`` to export the stored run: ``--otel`` or ``--to otel`` only.

    ``enabled = true`` alone does not: replaying a run to read its output must not send a
    second copy of a trace that was exported when it ran."""
    asked = "--otel" if getattr(option, "otel", False) else None
    if "otel" in (getattr(option, "to", None) or ()):
        asked = "--to otel"
    if asked and environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        raise vx.UsageError(f"vx replay {asked}: export is off (OTEL_SDK_DISABLED=true)")
    return asked


@vx.hookimpl
def vx_configure(config: Config) -> None:
    """When export is enabled for this ``vx run`` (or asked of ``vx replay``), check the
    options and the SDK before any task runs, then register the exporter (an observer of the
    run's events)."""
    option = config.option
    command = getattr(option, "command", None)
    if command == "replay":
        source = replay_enabled_by(option, os.environ)
    elif command in ("run", "watch") and not getattr(option, "dry", None):
        source = enabled_by(config.section("otel"), option, os.environ)
    else:
        return
    if source is None:
        return
    section = config.section("otel")
    from vx_otel.options import resolve

    options = resolve(section, os.environ)
    from vx_otel.deferred import DeferredExporter, missing_module

    missing = missing_module(options)
    if missing is not None:
        raise vx.PluginError(
            f"OpenTelemetry export is enabled ({source}) but the OpenTelemetry SDK is not "
            f"installed (no module {missing}); fix: {_INSTALL}"
        )
    exporter = DeferredExporter(options, config.require_root())
    config.stash[_EXPORTER] = exporter
    config.pluginmanager.register(exporter, name=_PLUGIN)


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    exporter = config.stash.pop(_EXPORTER, None)
    if exporter is not None:
        config.pluginmanager.unregister(exporter)
