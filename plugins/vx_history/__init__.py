"""vx plugin ``history``: the run store (every run and task result, in SQLite under
``.vx/``), ``vx history``, history-aware task priorities, and flaky / slow task lines at the
end of a run. Configured by ``[tool.vx.history]``; read the store with
:mod:`vx_history.store`."""
