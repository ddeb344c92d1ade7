"""vx_sandbox: confine each task to its declared inputs, outputs and network.

The ``sandbox`` plugin (entry point ``sandbox = "vx_sandbox.hooks"``) derives a policy from
what vx already knows about a task and enforces it with Landlock (+ seccomp) or bubblewrap;
denied accesses are reported by path. See docs/sandbox.md.
"""
