"""The warm server (``vx daemon``): a per-workspace background process that answers
``vx run`` full hits and ``--dry`` plans without the interpreter start, imports and plugin
loading of a new process (see docs/daemon.md).

- :mod:`vx.daemon.client`: what the ``vx`` entry point runs before importing anything heavy
  (standard library only): find a live server, pass it the request and the terminal, relay
  its answer, or say "run it here".
- :mod:`vx.daemon.serving`: the kernel's side of a served request (admit a run only when
  nothing would execute; hold output until then).
- :mod:`vx.daemon.server`: the server process.
- :mod:`vx.daemon.control`: start, stop, status and the auto-start decision.
"""
