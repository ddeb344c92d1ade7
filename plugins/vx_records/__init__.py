"""vx plugin ``records``: each run's events as a versioned NDJSON stream (``vx run
--events``), stored with the run in the history plugin's run store, replayed into observers
without side effects (``vx replay``), and drawn as one self-contained HTML page
(``vx report``). The event schema is :mod:`vx_records.events` (docs/events.md)."""
