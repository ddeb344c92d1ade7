"""``[tool.vx.remote]``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RemoteSettings(BaseModel):
    """Where the remote cache is and how vx may use it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    """Base URL of the server (or ``VX_REMOTE_CACHE_URL``, fallback ``TURBO_API``)."""
    team: str | None = None
    """Team slug, or a team id starting with ``team_``.

    Also ``VX_REMOTE_CACHE_TEAM`` (fallback ``TURBO_TEAM``)."""
    token_env: str = "VX_REMOTE_CACHE_TOKEN"
    """Environment variable holding the bearer token (fallback ``TURBO_TOKEN``)."""
    read: bool = True
    write: bool = True
    timeout: float = Field(default=10.0, gt=0)
    """Seconds allowed for each read (HEAD/GET)."""
    upload_timeout: float = Field(default=60.0, gt=0)
    """Seconds allowed for each upload, and for all uploads at the end of a run."""
    signature: bool = False
    """HMAC-SHA256-sign uploads and verify downloads (key: ``VX_REMOTE_CACHE_SIGNATURE_KEY``,
    fallback ``TURBO_REMOTE_CACHE_SIGNATURE_KEY``)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value
