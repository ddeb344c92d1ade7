"""vx plugin ``dask``: run the task graph on a Dask distributed cluster; outputs travel through
the shared remote cache. Inert unless ``--executor=dask://...`` or ``[tool.vx.dask] scheduler``."""
