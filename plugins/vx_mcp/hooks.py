"""Hooks of the ``mcp`` plugin (thin: the SDK is imported only when ``vx mcp`` runs)."""
