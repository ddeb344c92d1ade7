"""vx plugin ``cache``: the local content-addressed artifact store (the embedded default
cache layer) and the ``vx cache`` command. Configured by ``[tool.vx.cache]``."""
