"""vx plugin ``remote``: a Turborepo-compatible HTTP remote cache layer (``/v8/artifacts``),
with optional HMAC-signed artifacts. Inert unless a URL is configured."""
