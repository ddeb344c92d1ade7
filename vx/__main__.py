"""``vx`` console script. ``vx --version`` answers before anything heavy is imported."""

from __future__ import annotations

import sys
import time


def _process_started() -> float:
    """``time.monotonic()`` at the moment this process started (Linux; else now): the
    ``Time:`` vx prints is the wall time of the whole command, interpreter start included."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rpartition(")")[2].split()[19])
            since_boot = float(uptime.read().split()[0])
        import os

        age = since_boot - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - max(0.0, age)


def main(argv: list[str] | None = None) -> int:
    # As the program's entry, the command started with the process; called from Python
    # (tests, tools), it starts now.
    started = _process_started() if argv is None else time.monotonic()
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from vx._version import __version__

        sys.stdout.write(f"vx {__version__}\n")
        return 0
    if argv is None:
        # A warm server of this workspace answers before anything heavy is imported.
        from vx.daemon.client import serve

        served = serve(args, started)
        if served is not None:
            return served
    try:
        from vx.cli import main as cli_main
    except KeyboardInterrupt:
        return 130
    return cli_main(args, started=started)


if __name__ == "__main__":
    sys.exit(main())
