"""``vx`` console script. ``vx --version`` answers before anything heavy is imported."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):
        from vx._version import __version__

        sys.stdout.write(f"vx {__version__}\n")
        return 0
    try:
        from vx.cli import main as cli_main
    except KeyboardInterrupt:
        return 130
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
