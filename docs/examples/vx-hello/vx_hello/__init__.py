"""vx-hello: an example vx plugin (see ``docs/plugins.md``).

The hooks live in :mod:`vx_hello.hooks`, which the ``vx`` entry point names.
Importing this package does no work.
"""

__version__ = "0.1.0"
