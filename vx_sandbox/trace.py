"""Accesses of a traced task, read from ``strace -f -y`` output.

Landlock denials are silent (the task only sees ``EACCES``); vx names them by running the
task under ``strace`` (audit mode, and again after a sandboxed task failed) and reading the
file, exec and network system calls back.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

__all__ = ["Access", "parse_trace", "strace_argv", "strace_path", "wait_for_trace"]

#: The system calls that read, write, execute or reach something by name.
TRACED = (
    "open,openat,openat2,creat,execve,execveat,truncate,mkdir,mkdirat,unlink,unlinkat,rmdir,"
    "rename,renameat,renameat2,link,linkat,symlink,symlinkat,mknod,mknodat,chdir,"
    "socket,connect,sendto,bind"
)


@cache
def strace_path() -> str | None:
    return shutil.which("strace")


def strace_argv(strace: str, trace_file: str, argv: list[str], *, detach: bool) -> list[str]:
    """``strace -f`` writing to ``trace_file``. ``detach``: the tracer runs as the tracee's
    grandchild (``-D``), so the task keeps its parent (vx) as in the untraced run; read the
    file after :func:`wait_for_trace`. (Not under bwrap: its PID namespace ends with the
    task, taking a detached tracer with it.)"""
    options = ["-f", "-q", "-y", "-e", "signal=none", "-e", f"trace={TRACED}"]
    if detach:
        options.insert(0, "-D")
    return [strace, *options, "-o", trace_file, "--", *argv]


@dataclass(frozen=True, slots=True)
class Access:
    """One access: ``kind`` is read, write, exec, list, link (the source of a hard link:
    writing through the link writes it) or net; ``target`` an absolute path
    or, for ``net``, ``"tcp 127.0.0.1:80"`` / ``"unix /run/x.sock"``."""

    kind: str
    target: str
    error: str | None
    """The errno name when the call failed (``EACCES`` ...), else None."""
    operation: str = ""
    """For ``net``: connect, send or bind."""


def wait_for_trace(trace_file: str, timeout: float = 5.0) -> None:
    """Wait until the detached tracer has written the exit of the first traced process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(trace_file, encoding="utf-8", errors="replace") as handle:
                first = handle.readline().split(" ", 1)[0]
                if first and any(line.startswith(f"{first} +++ ") for line in handle):
                    return
        except OSError:
            pass
        time.sleep(0.01)


_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)(?:<[^>]*>)?(?:\s+(E[A-Z0-9]+))?.*$")
_FD_PATH = re.compile(r"^(?:AT_FDCWD|-?\d+)<(.*)>$")
_STRING = re.compile(r'^@?"((?:[^"\\]|\\.)*)"')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDR4 = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_ADDR6 = re.compile(r'inet_pton\(AF_INET6,\s*"([^"]+)"')
_UNIX = re.compile(r'sun_path=(@?)"((?:[^"\\]|\\.)*)"')
_FAMILY = re.compile(r"sa_family=(\w+)")


def _unescape(text: str) -> str:
    raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def _split_args(text: str) -> list[str]:
    """Top-level arguments of a decoded call (commas inside quotes/brackets kept)."""
    args: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    current: list[str] = []
    for char in text:
        if quoted:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "{[(<":
            depth += 1
        elif char in "}])>":
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if current:
        args.append("".join(current).strip())
    return args


def _string(arg: str) -> str | None:
    match = _STRING.match(arg)
    return _unescape(match.group(1)) if match else None


def _directory(arg: str, cwd: str) -> str:
    match = _FD_PATH.match(arg)
    return match.group(1) if match else cwd


def _join(directory: str, path: str) -> str:
    return os.path.normpath(path if path.startswith("/") else os.path.join(directory, path))


def _open_kind(flags: str) -> str | None:
    if "O_PATH" in flags:
        return None
    if any(flag in flags for flag in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")):
        return "write"
    return "list" if "O_DIRECTORY" in flags else "read"


def _calls(lines: Iterable[str]) -> Iterator[tuple[int, str, str, str | None, str]]:
    """``(pid, name, arguments, errno, result)`` per completed call."""
    pending: dict[int, str] = {}
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        pid, text = int(match.group(1)), match.group(2)
        if text.endswith("<unfinished ...>"):
            pending[pid] = text[: -len("<unfinished ...>")].rstrip()
            continue
        if text.startswith("<... "):
            head = pending.pop(pid, None)
            if head is None:
                continue
            text = head + text.partition("resumed>")[2]
        call = _CALL.match(text)
        result = _RESULT.search(text)
        if call is None or result is None:
            continue
        arguments = text[len(call.group(1)) + 1 : result.start()]
        yield pid, call.group(1), arguments, result.group(2), result.group(1)


def _network(arguments: list[str], index: int) -> str | None:
    if len(arguments) <= index:
        return None
    address = arguments[index]
    family = _FAMILY.search(address)
    if family is None:
        return None
    if family.group(1) == "AF_UNIX":
        unix = _UNIX.search(address)
        if unix is None:
            return None
        return f"unix {unix.group(1)}{_unescape(unix.group(2))}"
    port = _PORT.search(address)
    host = _ADDR4.search(address) or _ADDR6.search(address)
    if family.group(1) in ("AF_INET", "AF_INET6") and port and host:
        shown = host.group(1) if family.group(1) == "AF_INET" else f"[{host.group(1)}]"
        return f"{shown}:{port.group(1)}"
    return None


class _Parser:
    """State of one trace: working directories and socket protocols per process."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self.cwds: dict[int, str] = {}
        self.protocols: dict[tuple[int, str], str] = {}
        self.accesses: list[Access] = []

    def feed(self, pid: int, name: str, raw: str, error: str | None, result: str) -> None:
        args = _split_args(raw)
        here = self.cwds.get(pid, self.cwd)
        first = args[0] if args else ""
        if first.startswith("AT_FDCWD<"):
            here = self.cwds[pid] = _directory(first, here)

        def path_at(index: int, directory: str = here) -> str | None:
            value = _string(args[index]) if len(args) > index else None
            return None if value is None else _join(directory, value)

        def at(index: int) -> str:
            return _directory(args[index], here) if len(args) > index else here

        found: list[tuple[str, str | None]] = []
        if name in ("open", "creat"):
            kind = "write" if name == "creat" else _open_kind(args[1] if len(args) > 1 else "")
            if kind:
                found.append((kind, path_at(0)))
        elif name in ("openat", "openat2"):
            kind = _open_kind(args[2] if len(args) > 2 else "")
            if kind:
                found.append((kind, path_at(1, at(0))))
        elif name == "execve":
            found.append(("exec", path_at(0)))
        elif name == "execveat":
            found.append(("exec", path_at(1, at(0))))
        elif name in ("truncate", "mkdir", "unlink", "rmdir", "mknod"):
            found.append(("write", path_at(0)))
        elif name in ("mkdirat", "unlinkat", "mknodat"):
            found.append(("write", path_at(1, at(0))))
        elif name in ("rename", "link"):
            found += [("write" if name == "rename" else "link", path_at(0)), ("write", path_at(1))]
        elif name in ("renameat", "renameat2", "linkat"):
            source = "link" if name == "linkat" else "write"
            found += [(source, path_at(1, at(0))), ("write", path_at(3, at(2)))]
        elif name == "symlink":
            found.append(("write", path_at(1)))
        elif name == "symlinkat":
            found.append(("write", path_at(2, at(1))))
        elif name == "chdir" and error is None:
            target = path_at(0)
            if target is not None:
                self.cwds[pid] = target
        elif name == "socket" and error is None:
            kind = "udp" if "SOCK_DGRAM" in raw else "tcp" if "SOCK_STREAM" in raw else "socket"
            self.protocols[(pid, result)] = kind
        elif name in ("connect", "sendto", "bind"):
            self._network(pid, name, args, error)
        self.accesses += [Access(kind, path, error) for kind, path in found if path is not None]

    def _network(self, pid: int, name: str, args: list[str], error: str | None) -> None:
        target = _network(args, 4 if name == "sendto" else 1)
        if target is None:
            return
        if not target.startswith("unix "):
            fd = args[0].partition("<")[0]
            default = "udp" if name == "sendto" else "tcp"
            target = f"{self.protocols.get((pid, fd), default)} {target}"
        operation = "send" if name == "sendto" else name
        self.accesses.append(Access("net", target, error, operation))


def parse_trace(lines: Iterable[str], cwd: str) -> list[Access]:
    """Every named access in ``strace -f -y`` output (relative paths resolved)."""
    parser = _Parser(cwd)
    for call in _calls(lines):
        parser.feed(*call)
    return parser.accesses
