"""vx plugin ``init``: ``vx init`` proposes a ``[tool.vx]`` configuration from what a
repository already declares (uv workspace, poe tasks, hatch scripts, tox/nox, tool
configuration, turbo.json) and writes it after showing the diff."""
