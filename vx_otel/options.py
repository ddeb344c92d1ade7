"""The effective exporter options: ``[tool.vx.otel]`` over the standard ``OTEL_*`` variables.

Pure Python (no OpenTelemetry import): it runs before any task, so that a bad endpoint,
protocol or header is a configuration error naming the key or the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import vx

__all__ = [
    "PROTOCOLS",
    "ExportOptions",
    "check_endpoint",
    "check_header_name",
    "parse_headers",
    "resolve",
]

PROTOCOLS = ("http/protobuf", "grpc")
_DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Everything the exporter needs, validated."""

    endpoint: str
    """For http/protobuf the full traces URL (``.../v1/traces``); for gRPC ``scheme://host:port``."""
    protocol: str
    headers: dict[str, str] = field(repr=False)
    service_name: str | None
    timeout: float
    flush_timeout: float
    export_commands: bool
    log_tail: int


def check_endpoint(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host (and a valid port), else ValueError."""
    expected = "expected http(s)://HOST[:PORT][/PATH], e.g. http://localhost:4318"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc}; {expected}), got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"not a valid collector URL ({expected}), got {url!r}")
    if port == 0:
        raise ValueError(f"port 0 is not a valid port, got {url!r}")
    return url


def check_header_name(name: str) -> str:
    if not _TOKEN.match(name):
        raise ValueError(f"not a valid HTTP header name, got {name!r}")
    return name


def parse_headers(text: str, variable: str) -> dict[str, str]:
    """``key1=value1,key2=value2`` (values percent-decoded), as the OTLP exporter spec says.

    Errors name the variable and the entry's position, never a value (it may be a token)."""
    headers: dict[str, str] = {}
    for index, item in enumerate(text.split(","), start=1):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not _TOKEN.match(name):
            raise vx.ConfigError(
                f"environment variable {variable}: entry {index} is not NAME=VALUE with a "
                "valid header name; expected e.g. 'x-api-key=...,x-team=ci'"
            )
        headers[name.lower()] = unquote(value.strip())
    return headers


def _traces_url(base: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` semantics: ``/v1/traces`` is appended to the path."""
    return base.rstrip("/") + "/v1/traces"


def resolve(section: Any, environ: Mapping[str, str]) -> ExportOptions:
    """The options for one run from the validated ``[tool.vx.otel]`` table (``section``)."""

    def env(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

    protocol: str | None = section.protocol
    if protocol is None:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            value = env(variable)
            if value is not None:
                if value not in PROTOCOLS:
                    raise vx.ConfigError(
                        f"environment variable {variable}: unknown protocol {value!r}; "
                        f"vx exports with {' or '.join(PROTOCOLS)}"
                    )
                protocol = value
                break
    protocol = protocol or "http/protobuf"

    endpoint: str
    if section.endpoint is not None:
        path = urlsplit(section.endpoint).path
        endpoint = section.endpoint
        if protocol == "http/protobuf" and path in ("", "/"):
            endpoint = _traces_url(endpoint)
    else:
        endpoint = _DEFAULT_ENDPOINTS[protocol]
        for variable, full in (
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", True),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", False),
        ):
            value = env(variable)
            if value is None:
                continue
            try:
                check_endpoint(value)
            except ValueError as exc:
                raise vx.ConfigError(f"environment variable {variable}: {exc}") from None
            endpoint = value
            if protocol == "http/protobuf" and not full:
                endpoint = _traces_url(value)
            break
        else:
            if protocol == "http/protobuf":
                endpoint = _traces_url(endpoint)
    if protocol == "grpc":
        parts = urlsplit(endpoint)
        endpoint = f"{parts.scheme}://{parts.netloc}"

    headers: dict[str, str] = {}
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        value = env(variable)
        if value is not None:
            headers.update(parse_headers(value, variable))
    headers.update({name.lower(): value for name, value in section.headers.items()})

    return ExportOptions(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        service_name=section.service_name,
        timeout=float(section.timeout),
        flush_timeout=float(section.flush_timeout),
        export_commands=bool(section.export_commands),
        log_tail=int(section.log_tail),
    )
