"""``[tool.vx.otel]``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from vx_otel.options import check_endpoint, check_header_name

#: Validated on its own, so that an error names the header and never shows its value.
HeaderName = Annotated[str, AfterValidator(check_header_name)]


class OtelSettings(BaseModel):
    """Where and how runs are exported; keys set here override the ``OTEL_*`` variables."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Export every ``vx run`` (also ``VX_OTEL__ENABLED=1`` or ``vx run --otel``)."""
    endpoint: str | None = None
    """Collector URL (default: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, then
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, then ``http://localhost:4318`` / ``:4317`` for gRPC)."""
    protocol: Literal["http/protobuf", "grpc"] | None = None
    """Default: ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
    then ``http/protobuf``."""
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    """Sent with every export, over ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS``; never shown."""
    service_name: str | None = None
    """``service.name`` (default: ``OTEL_SERVICE_NAME``, then ``vx``)."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds allowed for each export request."""
    flush_timeout: float = Field(default=3.0, ge=0)
    """Seconds vx waits at the end of a run for spans still being sent."""
    export_commands: bool = False
    """Also export each task's command line (``vx.task.command``)."""
    log_tail: int = Field(default=2048, ge=0)
    """Bytes of a failed task's output attached to its span (0: none)."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            check_endpoint(value)
        return value
