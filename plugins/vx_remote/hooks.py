"""Hooks of the ``remote`` plugin (thin: httpx is imported only when a URL is configured)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import CacheLayer, Config
    from vx_remote.client import RemoteCache

#: The run's remote layer, when one is configured.
_LAYER: vx.StashKey[RemoteCache] = vx.StashKey()


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_remote.settings import RemoteSettings

    return {"remote": RemoteSettings}


@vx.hookimpl
def vx_cache_layers(config: Config) -> list[CacheLayer]:
    settings = config.section("remote")
    if not (os.environ.get("VX_REMOTE_CACHE_URL") or settings.url or os.environ.get("TURBO_API")):
        return []
    from vx_remote.client import RemoteCache
    from vx_remote.target import remote_target

    target = remote_target(config)
    if isinstance(target, str):
        vx.warning(f"remote cache disabled: {target}")
        return []
    layer = RemoteCache(
        target.url,
        target.team,
        target.token(os.environ),
        read=target.read,
        write=target.write,
        timeout=target.timeout,
        upload_timeout=target.upload_timeout,
        signature_key=target.signature_key(os.environ),
    )
    config.stash[_LAYER] = layer
    return [layer]


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    layer = config.stash.pop(_LAYER)
    if layer is not None:
        layer.close()
