"""vx plugin ``mcp``: ``vx mcp`` serves the workspace to coding agents over the Model Context
Protocol (stdio), built on the official ``mcp`` SDK (extra ``vx-build[mcp]``)."""
