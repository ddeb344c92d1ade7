"""Command-line entry: pre-parse, load plugins, build the parser from plugins, dispatch."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from vx._version import __version__
from vx.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, PluginError, UsageError, VxError

__all__ = ["Command", "CommandRegistry", "Parser", "main"]


@dataclass(slots=True)
class Command:
    """A subcommand contributed through ``vx_add_commands``."""

    name: str
    help: str
    handler: Callable[[Any], int]
    """``handler(config) -> exit code``."""
    needs_workspace: bool = True
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    """Optional: add arguments to the subcommand's own argparse parser."""
    options_of: str | None = None
    """Also accept every option added for this other command (``vx watch`` takes the options
    of ``vx run``, including those plugins add to it)."""

    def takes_options_of(self, command: str | None) -> bool:
        return command is not None and command in (self.name, self.options_of)


class CommandRegistry:
    """Collects subcommands; passed to ``vx_add_commands``."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        *,
        help: str,
        handler: Callable[[Any], int],
        needs_workspace: bool = True,
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
        options_of: str | None = None,
    ) -> Command:
        if name in self.commands:
            raise PluginError(f"two plugins add the command 'vx {name}'")
        command = Command(name, help, handler, needs_workspace, configure, options_of)
        self.commands[name] = command
        return command


class Parser:
    """Passed to ``vx_addoption``: options are added globally or to one subcommand."""

    def __init__(self, commands: CommandRegistry) -> None:
        self.commands = commands
        self._options: list[tuple[str | None, tuple[str, ...], dict[str, Any]]] = []
        self._optional_commands: set[str] = set()

    def add_option(
        self, *flags: str, command: str | tuple[str, ...] | None = None, **kwargs: Any
    ) -> None:
        """Like ``argparse.ArgumentParser.add_argument``; ``command=None`` means global.

        A tuple adds the option to each of those commands that exists (an observer's
        options on both ``vx run`` and ``vx replay``, which feeds it a stored run)."""
        if isinstance(command, tuple):
            self._optional_commands.update(command)
            for name in command:
                self._options.append((name, flags, kwargs))
        else:
            self._options.append((command, flags, kwargs))

    def build(self, only: str | None = None) -> argparse.ArgumentParser:
        """The argparse parser. ``only``: no other subcommand is built, and a parse error
        raises :class:`_FullParserNeeded` instead of exiting: the caller parses again with
        every subcommand built (see :func:`parse`)."""
        parser_class = _ArgumentParser if only is None else _PartialArgumentParser
        main = parser_class(
            prog="vx",
            description="vx: a plugin-first build system and task runner for Python monorepos.",
            epilog="Exit codes: 0 success; highest task exit code when a task fails; "
            "2 usage error; 78 configuration or plugin error; 130 interrupted.",
            allow_abbrev=False,
        )
        main.add_argument(
            "-V",
            "--version",
            action="count",
            default=0,
            dest="version",
            help="print the version (-VV: also the plugins)",
        )
        globals_ = [(flags, kwargs) for command, flags, kwargs in self._options if command is None]
        for flags, kwargs in globals_:
            main.add_argument(*flags, **kwargs)
        subparsers = main.add_subparsers(dest="command", metavar="COMMAND")
        for command in self.commands.commands.values():
            if only is not None and command.name != only:
                continue  # another command on the line: an invalid choice, parsed again
            sub = subparsers.add_parser(
                command.name, help=command.help, description=command.help, allow_abbrev=False
            )
            if command.configure is not None:
                command.configure(sub)
            for option_command, flags, kwargs in self._options:
                if command.takes_options_of(option_command):
                    sub.add_argument(*flags, **kwargs)
            group = sub.add_argument_group("global options")
            for flags, kwargs in globals_:
                if flags[0].startswith("-"):
                    group.add_argument(*flags, **{**kwargs, "default": argparse.SUPPRESS})
        unknown = {c for c, _, _ in self._options if c is not None} - set(self.commands.commands)
        unknown -= self._optional_commands
        if unknown:
            raise PluginError(f"options were added to unknown command(s): {', '.join(unknown)}")
        return main


def parse(parser: Parser, args: list[str]) -> argparse.Namespace:
    """Parse ``args``, building only the named subcommand's arguments (a ``vx run`` needs
    none of the ~150 options of the other commands); anything unexpected (a parse error,
    help, another command than guessed) is parsed again by the full parser, so errors,
    hints and help are exactly the full parser's."""
    args = _optional_values_need_equals(parser, args)
    guess = None
    if not {"-h", "--help"} & set(args):
        guess = next((arg for arg in args if arg in parser.commands.commands), None)
    if guess is not None:
        try:
            option = parser.build(only=guess).parse_args(args)
        except _FullParserNeeded:
            pass
        else:
            if option.command == guess:
                return option
    return parser.build().parse_args(args)


#: Turborepo flags a new user types, and what vx spells instead.
_TURBO_FLAGS = {
    "--graph": "vx prints the task graph with `vx graph [TASK...]`",
    "--summary": "did you mean '--summarize'?",
    "--scope": "select projects with -F/--filter NAME",
    "--filters": "did you mean '--filter'?",
    "--parallel": "set the concurrency with -j/--concurrency N",
    "--cwd": "run from another directory with vx -C DIR",
    "--cache-dir": "set VX_CACHE_DIR=DIR or [tool.vx.cache] dir",
    "--no-cache": "read but do not write the cache with --cache=local:r,remote:r",
    "--remote-only": "use only the remote cache with --cache=remote:rw",
    "--since": "select changed projects with --affected --base REV",
    "--only": "run one task without its dependencies' tasks with PROJECT#TASK",
}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with hints for unknown options: a close spelling, or the vx equivalent of a
    Turborepo flag."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check the metavar), and each
        # one asks the terminal for its size: about 130 ioctls per start-up. Ask once.
        make: Callable[..., argparse.HelpFormatter] = self.formatter_class
        return make(prog=self.prog, width=_help_width(os.environ.get("COLUMNS")))

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            hints = [self._hint(word) for word in message[len(prefix) :].split()]
            hints = [hint for hint in hints if hint]
            if hints:
                message += "\n  " + "\n  ".join(hints)
        super().error(message)

    def _hint(self, word: str) -> str:
        if not word.startswith("-"):
            return ""
        flag = word.split("=", 1)[0]
        for key in (word, flag):
            if key in _TURBO_FLAGS:
                return f"{word}: {_TURBO_FLAGS[key]}"
        from vx.errors import did_you_mean

        hint = did_you_mean(flag, self._known_flags()).strip().removeprefix("(").removesuffix(")")
        return f"{word}: {hint}" if hint else ""

    def _known_flags(self) -> list[str]:
        flags = [flag for flag in self._option_string_actions if flag.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += [f for f in sub._option_string_actions if f.startswith("--")]
        return sorted(set(flags))


class _FullParserNeeded(Exception):
    """A partially built parser met something only the full parser may answer."""


class _PartialArgumentParser(_ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _FullParserNeeded(message)


@functools.cache
def _help_width(columns: str | None) -> int:
    """What argparse's HelpFormatter computes when given no width (``COLUMNS`` or the
    terminal's width, minus 2), once per value of ``COLUMNS``."""
    import shutil

    return shutil.get_terminal_size().columns - 2


def _global_options(parser: Parser) -> None:
    parser.add_option("-C", dest="directory", metavar="DIR", help="run as if vx was started in DIR")
    parser.add_option(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME",
        help="load plugin module NAME; -p no:NAME blocks plugin NAME",
    )
    parser.add_option(
        "--trace-config",
        action="store_true",
        default=False,
        help="print each plugin as it is registered",
    )
    parser.add_option(
        "--debug", action="store_true", default=False, help="show tracebacks for errors"
    )
    parser.add_option(
        "--daemon",
        dest="daemon",
        action="store_true",
        default=None,
        help="use (and start) this workspace's warm server, also on CI (see docs/daemon.md)",
    )
    parser.add_option(
        "--no-daemon",
        dest="daemon",
        action="store_false",
        help="neither use nor start the warm server",
    )
    parser.add_option("-q", "--quiet", action="count", default=0, help="less output")
    parser.add_option("-v", "--verbose", action="count", default=0, help="more output")


def _preparse(args: list[str]) -> argparse.Namespace:
    """Read the options needed before plugins load (they may appear anywhere)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("-C", dest="directory")
    pre.add_argument("-p", dest="plugins", action="append", default=[])
    pre.add_argument("--trace-config", action="store_true")
    pre.add_argument("--debug", action="store_true")
    pre.add_argument("-q", "--quiet", action="count", default=0)
    pre.add_argument("-v", "--verbose", action="count", default=0)
    pre.add_argument("-V", "--version", action="count", default=0)
    try:
        namespace, _ = pre.parse_known_args(args)
    except SystemExit as exc:  # e.g. "-C" without a value
        raise UsageError("invalid global options; see vx --help") from exc
    return namespace


def _optional_values_need_equals(parser: Parser, args: list[str]) -> list[str]:
    """An option with an optional value takes it only after ``=`` (``--continue[=MODE]``):
    ``vx run --continue test`` is ``--continue=always test``, not ``--continue=test``.
    Only the options of the command being parsed (and global ones) are rewritten."""
    name = next((a for a in args if a in parser.commands.commands), None)
    command = parser.commands.commands[name] if name is not None else None
    bare = {
        flag: kwargs["const"]
        for option_command, flags, kwargs in parser._options
        if (
            option_command is None
            or (command is not None and command.takes_options_of(option_command))
        )
        and kwargs.get("nargs") == "?"
        and isinstance(kwargs.get("const"), str)
        for flag in flags
        if flag.startswith("--")
    }
    if "--" in args:
        end = args.index("--")
        return [f"{a}={bare[a]}" if a in bare else a for a in args[:end]] + args[end:]
    return [f"{a}={bare[a]}" if a in bare else a for a in args]


def main(args: list[str], *, started: float | None = None) -> int:
    """Run vx with ``args``; ``started``: ``time.monotonic()`` when the command started (the
    ``Time:`` of ``vx run`` counts from there)."""
    debug = "--debug" in args
    try:
        code = _main(args, time.monotonic() if started is None else started)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (``vx graph | head``): normal use, not an error to report.
        _silence_stdout()
        return 1
    except VxError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        import traceback

        if debug:
            traceback.print_exc()
        _print_error(
            f"internal error: {type(exc).__name__}: {exc} (this is a bug in vx; "
            "run again with --debug for the traceback and report it)"
        )
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not fail again (the way the
    Python documentation recommends handling EPIPE)."""
    import contextlib

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _print_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"vx: error: {message}\n")


def _main(args: list[str], started: float) -> int:
    from vx import _log
    from vx.config import Config, find_workspace_root, tool_vx
    from vx.plugin_manager import VxPluginManager, env_plugin_list

    pre = _preparse(args)
    _log.set_verbosity(pre.verbose - pre.quiet)
    invocation_dir = Path(pre.directory or os.getcwd()).resolve()
    if not invocation_dir.is_dir():
        raise UsageError(f"-C {pre.directory}: not a directory")

    def trace(message: str) -> None:
        sys.stderr.write(f"vx: trace-config: {message}\n")

    pm = VxPluginManager(trace=trace if pre.trace_config else None)
    pm.block(name[3:] for name in pre.plugins if name.startswith("no:"))
    pm.load_entrypoints(autoload=not os.environ.get("VX_DISABLE_PLUGIN_AUTOLOAD"))
    pm.import_plugins(env_plugin_list(), "VX_PLUGINS")

    root_error: VxError | None = None
    found = None
    try:
        found = find_workspace_root(invocation_dir)
    except VxError as exc:
        root_error = exc
    root, root_data = found if found else (None, None)
    if root is not None and ("run" in args or "why" in args):
        from vx.gitfiles import prefetch_listing

        prefetch_listing(root)
    if root is not None and root_data is not None:
        table = tool_vx(root_data) or {}
        root_file = str(root / "pyproject.toml")
        plugins = _string_list(table, "plugins", root_file)
        required = _string_list(table, "required_plugins", root_file)
        # Workspace-local plugin modules (tool.vx.plugins, -p) import from the root.
        if str(root) not in sys.path:
            sys.path.append(str(root))
        pm.import_plugins(plugins, "tool.vx.plugins")
        pm.check_required(required, root_file)
    pm.import_plugins((name for name in pre.plugins if not name.startswith("no:")), "-p")
    _check_pending(pm)

    registry = CommandRegistry()
    pm.hooks.add_commands(registry)
    parser = Parser(registry)
    _global_options(parser)
    pm.hooks.addoption(parser)
    try:
        option = parse(parser, args)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else 0
    if option.version:
        sys.stdout.write(f"vx {__version__}\n")
        if option.version > 1:
            for name, info in pm.infos.items():
                sys.stdout.write(f"  {name}: {info.origin} ({info.module})\n")
        return 0
    if option.command is None:
        parser.build().print_help(sys.stderr)
        return EXIT_USAGE
    command = registry.commands[option.command]
    if command.needs_workspace and root_error is not None:
        raise root_error
    config = Config(pm, option, invocation_dir, root, root_data)
    config.args = list(args)
    config.started = started
    if command.needs_workspace:
        config.require_root()
    pm.hooks.configure(config)
    try:
        code = command.handler(config)
    finally:
        pm.hooks.unconfigure(config)
    config.save_state()
    if option.command == "run" and root is not None:
        from vx.daemon.control import autostart

        sys.stdout.flush()
        try:
            autostart(args, root, tool_vx(root_data or {}) or {})
        except OSError as exc:  # the run itself passed: starting a server is a convenience
            _log.warning(f"could not start the warm server: {exc}")
    return code


def _string_list(table: dict[str, Any], key: str, file: str) -> list[str]:
    from vx.errors import ConfigError

    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(
            f"expected a list of strings, got {value!r}", file=file, key=f"tool.vx.{key}"
        )
    return value


def _check_pending(pm: Any) -> None:
    import pluggy

    from vx.errors import did_you_mean

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        # ``pm.hook`` also holds a caller for each unknown hook: only those with a spec are real.
        callers = {h: getattr(pm.hook, h) for h in vars(pm.hook) if not h.startswith("_")}
        hooks = sorted(h for h, caller in callers.items() if caller.has_spec())
        unknown = next(
            (
                h
                for h, caller in callers.items()
                if not caller.has_spec()
                and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
            ),
            "?",
        )
        raise PluginError(
            f"{pm.info_for(name)} implements unknown hook '{unknown}'{did_you_mean(unknown, hooks)}"
        ) from exc
