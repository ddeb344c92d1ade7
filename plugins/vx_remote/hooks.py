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


def _first(*values: str | None) -> str | None:
    return next((value for value in values if value), None)


@vx.hookimpl
def vx_cache_layers(config: Config) -> list[CacheLayer]:
    settings = config.section("remote")
    env = os.environ
    url = _first(env.get("VX_REMOTE_CACHE_URL"), settings.url, env.get("TURBO_API"))
    if not url:
        return []
    from vx_remote.client import RemoteCache, redact

    if not url.startswith(("http://", "https://")):
        vx.warning(
            f"remote cache disabled: URL {redact(url)!r} must start with http:// or https://"
        )
        return []
    team = _first(env.get("VX_REMOTE_CACHE_TEAM"), settings.team, env.get("TURBO_TEAM"))
    if not team:
        vx.warning(
            "remote cache disabled: no team; set [tool.vx.remote] team or VX_REMOTE_CACHE_TEAM"
        )
        return []
    token = _first(env.get(settings.token_env), env.get("TURBO_TOKEN"))
    key: bytes | None = None
    if settings.signature:
        secret = _first(
            env.get("VX_REMOTE_CACHE_SIGNATURE_KEY"), env.get("TURBO_REMOTE_CACHE_SIGNATURE_KEY")
        )
        if not secret:
            vx.warning(
                "remote cache disabled: signature = true but VX_REMOTE_CACHE_SIGNATURE_KEY "
                "is not set"
            )
            return []
        key = secret.encode()
    layer = RemoteCache(
        url,
        team,
        token,
        read=settings.read,
        write=settings.write,
        timeout=settings.timeout,
        upload_timeout=settings.upload_timeout,
        signature_key=key,
    )
    config.stash[_LAYER] = layer
    return [layer]


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    layer = config.stash.pop(_LAYER)
    if layer is not None:
        layer.close()
