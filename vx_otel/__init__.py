"""vx_otel: opt-in OpenTelemetry export of every ``vx run`` (plugin ``otel``).

One trace per run, following the OpenTelemetry CI/CD semantic conventions: a run span and
one child span per task, sent over OTLP (http/protobuf or gRPC) in the background. Each task
gets ``TRACEPARENT``/``TRACESTATE`` so instrumented tools nest their spans under it. Off unless
enabled (``[tool.vx.otel] enabled = true``, ``VX_OTEL__ENABLED=1`` or ``vx run --otel``);
when off, nothing of OpenTelemetry is imported. Needs ``pip install 'vx-build[otel]'``.

Modules: :mod:`vx_otel.hooks` (the entry point, thin), :mod:`vx_otel.settings`
(``[tool.vx.otel]``), :mod:`vx_otel.options` (the effective exporter options, from the table and
the standard ``OTEL_*`` variables), :mod:`vx_otel.tracing` (spans from vx's events).
"""
