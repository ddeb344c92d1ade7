"""Where the remote cache is, resolved from ``[tool.vx.remote]`` and the environment (shared by
the cache layer and by remote executors, whose workers reach the same server)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vx import Config


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """The server and how to use it; secrets stay in the environment (named, never copied)."""

    url: str
    team: str
    token_env: str
    read: bool
    write: bool
    timeout: float
    upload_timeout: float
    signature: bool

    def token(self, environ: Mapping[str, str]) -> str | None:
        return _first(environ.get(self.token_env), environ.get("TURBO_TOKEN"))

    def signature_key(self, environ: Mapping[str, str]) -> bytes | None:
        """The HMAC key when ``signature`` is on (None when off or unset)."""
        if not self.signature:
            return None
        secret = _first(
            environ.get("VX_REMOTE_CACHE_SIGNATURE_KEY"),
            environ.get("TURBO_REMOTE_CACHE_SIGNATURE_KEY"),
        )
        return secret.encode() if secret else None


def _first(*values: str | None) -> str | None:
    return next((value for value in values if value), None)


def remote_target(config: Config, environ: Mapping[str, str] = os.environ) -> RemoteTarget | str:
    """The configured remote cache, or why there is none usable (a sentence)."""
    from vx_remote.client import redact

    settings = config.section("remote")
    url = _first(environ.get("VX_REMOTE_CACHE_URL"), settings.url, environ.get("TURBO_API"))
    if not url:
        return "no remote cache URL; set [tool.vx.remote] url or VX_REMOTE_CACHE_URL"
    if not url.startswith(("http://", "https://")):
        return f"URL {redact(url)!r} must start with http:// or https://"
    team = _first(environ.get("VX_REMOTE_CACHE_TEAM"), settings.team, environ.get("TURBO_TEAM"))
    if not team:
        return "no team; set [tool.vx.remote] team or VX_REMOTE_CACHE_TEAM"
    target = RemoteTarget(
        url=url,
        team=team,
        token_env=settings.token_env,
        read=settings.read,
        write=settings.write,
        timeout=settings.timeout,
        upload_timeout=settings.upload_timeout,
        signature=settings.signature,
    )
    if target.signature and target.signature_key(environ) is None:
        return "signature = true but VX_REMOTE_CACHE_SIGNATURE_KEY is not set"
    return target
