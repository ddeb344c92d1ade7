"""Landlock, seccomp and namespaces through ctypes, prepared in the parent and applied in the
child just before ``exec`` (``CommandSpec.preexec``).

Everything that can fail or allocate (opening paths, building the ruleset and the seccomp
program) happens in the parent; the child only makes the prepared system calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

__all__ = ["Confinement", "abi_version", "userns_available"]

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP_RUNNING = 0x1 | 0x40

# Filesystem access rights (include/uapi/linux/landlock.h) and the ABI that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

#: Rights that apply to a regular file (a rule on a file may only grant these).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR | IOCTL_DEV
LIST = READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter)))


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@cache
def abi_version() -> int:
    """The running kernel's Landlock ABI version (0: unavailable)."""
    if platform.system() != "Linux":
        return 0
    version = _libc().syscall(
        _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION
    )
    return max(int(version), 0)


def handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@cache
def userns_available() -> bool:
    """Whether this process may create a network namespace for a child (root: a plain
    ``CLONE_NEWNET``; others: inside a new user namespace)."""
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    libc = _libc()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os._exit(0 if libc.unshare(flags) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


# --- seccomp: network = false ------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
#: (socket, connect, sendto, io_uring_setup) system call numbers.
_SYSCALLS = {"x86_64": (41, 42, 44, 425), "aarch64": (198, 203, 206, 425)}
_LD_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_AND = 0x54
_RET = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_AF_UNIX, _AF_INET, _AF_INET6, _AF_NETLINK = 1, 2, 10, 16
_SOCK_DGRAM = 2


def _network_filter(channel_fd: int | None = None) -> list[tuple[int, int, int, int]] | None:
    """A BPF program denying network use: sockets other than Unix (stream), IPv4/6 and
    netlink; every ``connect`` (but one from descriptor ``channel_fd``: the runner-aware
    client connects to vx's Unix socket from there); ``sendto`` with an address; io_uring;
    foreign ABIs."""
    machine = platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    socket, connect, sendto, io_uring = _SYSCALLS[machine]
    deny = _ERRNO | errno.EACCES
    nosys = _ERRNO | errno.ENOSYS
    program: list[tuple[int, str | int, str | int, int] | str] = [
        (_LD_ABS, 0, 0, 4),  # arch
        (_JEQ, 1, 0, _AUDIT_ARCH[machine]),
        (_RET, 0, 0, nosys),
        (_LD_ABS, 0, 0, 0),  # nr
    ]
    if machine == "x86_64":  # x32 system calls
        program += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, nosys)]
    program += [
        (_JEQ, "socket", 0, socket),
        (_JEQ, "deny" if channel_fd is None else "connect", 0, connect),
        (_JEQ, "sendto", 0, sendto),
        (_JEQ, "nosys", 0, io_uring),
        (_RET, 0, 0, _ALLOW),
        "socket",
        (_LD_ABS, 0, 0, 16),  # args[0]: domain
        (_JEQ, "allow", 0, _AF_INET),
        (_JEQ, "allow", 0, _AF_INET6),
        (_JEQ, "allow", 0, _AF_NETLINK),
        (_JEQ, 0, "deny", _AF_UNIX),
        (_LD_ABS, 0, 0, 24),  # args[1]: type
        (_AND, 0, 0, 0xF),
        (_JEQ, "deny", "allow", _SOCK_DGRAM),
    ]
    if channel_fd is not None:
        program += [
            "connect",
            (_LD_ABS, 0, 0, 16),  # args[0]: the descriptor (low, high)
            (_JEQ, 0, "deny", channel_fd),
            (_LD_ABS, 0, 0, 20),
            (_JEQ, "allow", "deny", 0),
        ]
    program += [
        "sendto",
        (_LD_ABS, 0, 0, 48),  # args[4]: destination address (low, high)
        (_JEQ, 0, "deny", 0),
        (_LD_ABS, 0, 0, 52),
        (_JEQ, "allow", "deny", 0),
        "allow",
        (_RET, 0, 0, _ALLOW),
        "deny",
        (_RET, 0, 0, deny),
        "nosys",
        (_RET, 0, 0, nosys),
    ]
    labels: dict[str, int] = {}
    instructions: list[tuple[int, str | int, str | int, int]] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)

    def target(value: str | int, index: int) -> int:
        return labels[value] - index - 1 if isinstance(value, str) else value

    return [
        (code, target(jt, index), target(jf, index), k)
        for index, (code, jt, jf, k) in enumerate(instructions)
    ]


# --- the confinement of one task ---------------------------------------------------------


class Confinement:
    """A Landlock ruleset (and optional seccomp filter / network namespace) for one task.

    Build it in the parent with :meth:`allow`, then pass :meth:`preexec` as the spawn's
    ``preexec``; :meth:`close` releases the ruleset once the child has started.
    """

    def __init__(
        self, *, network: bool | str, abi: int | None = None, channel_fd: int | None = None
    ) -> None:
        self.abi = abi_version() if abi is None else abi
        if self.abi < 1:
            raise OSError(errno.ENOSYS, "Landlock is not available")
        self.handled = handled_fs(self.abi)
        self.network = network
        attr = _RulesetAttr(self.handled, 0, 0)
        if self.abi >= 4 and network is False:
            attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        if self.abi >= 6:
            attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = ctypes.sizeof(attr) if self.abi >= 6 else (16 if self.abi >= 4 else 8)
        libc = _libc()
        fd = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_create_ruleset: {os.strerror(code)}")
        self.fd: int | None = fd
        self._filter = _network_filter(channel_fd) if network is False else None
        self._prepare_child()

    def allow(self, paths: Iterable[str], rights: int) -> None:
        """Grant ``rights`` beneath each existing path (files get their file rights only)."""
        libc = _libc()
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                allowed = rights & self.handled
                if not os.path.isdir(path):
                    allowed &= FILE_RIGHTS
                if not allowed:
                    continue
                rule = _PathBeneathAttr(allowed, fd)
                if libc.syscall(_SYS_ADD_RULE, self.fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    code = ctypes.get_errno()
                    raise OSError(code, f"landlock_add_rule({path}): {os.strerror(code)}")
            finally:
                os.close(fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _prepare_child(self) -> None:
        """Everything the child needs, allocated now: it must not allocate or lock."""
        libc = _libc()
        self._prctl = libc.prctl
        self._syscall = libc.syscall
        self._unshare = libc.unshare
        self._socket = libc.socket
        self._ioctl = libc.ioctl
        self._fprog: _SockFprog | None = None
        if self._filter is not None:
            array = (_SockFilter * len(self._filter))(*(_SockFilter(*i) for i in self._filter))
            self._filter_array = array
            self._fprog = _SockFprog(len(self._filter), array)
        self._ns_flags = 0
        self._id_maps: list[tuple[bytes, bytes]] = []
        if self.network == "loopback":
            if os.geteuid() == 0:
                self._ns_flags = _CLONE_NEWNET
            else:
                self._ns_flags = _CLONE_NEWUSER | _CLONE_NEWNET
                self._id_maps = [
                    (b"/proc/self/setgroups", b"deny"),
                    (b"/proc/self/uid_map", f"{os.geteuid()} {os.geteuid()} 1".encode()),
                    (b"/proc/self/gid_map", f"{os.getegid()} {os.getegid()} 1".encode()),
                ]
            self._ifreq = ctypes.create_string_buffer(
                b"lo".ljust(16, b"\0") + _IFF_UP_RUNNING.to_bytes(2, "little"), 40
            )
        self._fprog_ref = ctypes.byref(self._fprog) if self._fprog is not None else None
        self._messages = {
            step: f"vx sandbox: {text}; the task was not started\n".encode()
            for step, text in (
                ("unshare", "cannot create the network namespace"),
                ("loopback", "cannot enable the loopback interface"),
                ("no_new_privs", "cannot set no_new_privs"),
                ("restrict", "cannot apply the Landlock ruleset"),
                ("filter", "cannot install the seccomp filter"),
            )
        }

    def confine_thread(self) -> None:
        """Restrict the calling thread (a fresh one that then starts the task: no network
        namespace here, ``unshare`` of a user namespace needs a single-threaded process)."""
        if self._ns_flags:
            raise OSError(errno.EINVAL, "a network namespace needs the preexec path")
        steps: list[tuple[str, Any, tuple[Any, ...]]] = [
            ("no_new_privs", self._prctl, (_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
            ("restrict", self._syscall, (_SYS_RESTRICT_SELF, self.fd, 0)),
        ]
        if self._fprog_ref is not None:
            steps.append(
                (
                    "filter",
                    self._prctl,
                    (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._fprog_ref, 0, 0),
                )
            )
        for step, function, args in steps:
            if function(*args) != 0:
                code = ctypes.get_errno()
                message = self._messages[step].decode().strip()
                raise OSError(code, f"{message}: {os.strerror(code)}")

    def preexec(self) -> Callable[[], None]:
        """The function to run in the child between fork and exec."""
        fd = self.fd

        def fail(step: str) -> None:
            os.write(2, self._messages[step])
            os._exit(126)

        def apply() -> None:  # pragma: no cover - runs in the child
            if self._ns_flags:
                if self._unshare(self._ns_flags) != 0:
                    fail("unshare")
                for path, content in self._id_maps:
                    handle = os.open(path, os.O_WRONLY)
                    os.write(handle, content)
                    os.close(handle)
                sock = self._socket(2, 2, 0)
                if sock < 0 or self._ioctl(sock, _SIOCSIFFLAGS, self._ifreq) != 0:
                    fail("loopback")
                os.close(sock)
            if self._prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                fail("no_new_privs")
            if self._syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
                fail("restrict")
            if self._fprog_ref is not None and self._prctl(
                _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._fprog_ref, 0, 0
            ):
                fail("filter")

        return apply
