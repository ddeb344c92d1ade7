"""Turning traced accesses into violations: what was denied (or undeclared), and the fix."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from vx_sandbox.policy import Policy
from vx_sandbox.trace import Access

__all__ = ["Violation", "denied", "format_violations", "undeclared"]

#: Errors a confinement produces: Landlock/seccomp (EACCES, EPERM), read-only binds (EROFS),
#: links/renames across rule boundaries (EXDEV), an empty network namespace (ENETUNREACH).
_PROC_PID = re.compile(r"^/proc/\d+/")
_DENIALS = frozenset({"EACCES", "EPERM", "EROFS", "EXDEV", "ENETUNREACH"})


@dataclass(frozen=True, slots=True)
class Violation:
    """An access outside the policy: ``kind`` read, write, exec, list or net."""

    kind: str
    target: str
    resolved: str
    fix: str

    def describe(self, root: str) -> str:
        shown = _display(self.target, root)
        if self.resolved != self.target:
            shown += f" -> {_display(self.resolved, root)}"
        return f"{self.kind:<5} {shown}  ({self.fix})"


def _display(path: str, root: str) -> str:
    if path.startswith(root.rstrip("/") + "/"):
        return os.path.relpath(path, root)
    return path


def _is_loopback(target: str) -> bool:
    address = target.partition(" ")[2]
    return address.startswith(("127.", "[::1]"))


def _fix(policy: Policy, task_name: str, kind: str, path: str, file: str) -> str:
    key = f"[tool.vx.tasks.{task_name}]"
    if kind == "net":
        if path.startswith("unix "):
            return f"{key} sandbox = {{ network = true }} in {file} (Unix sockets need network)"
        fix = f"{key} sandbox = {{ network = true }} in {file}"
        if _is_loopback(path):
            fix += ', or network = "loopback" if the task starts that server itself'
        return fix
    relative = os.path.relpath(path, policy.project_dir)
    inside_project = not relative.startswith("..")
    if kind == "write":
        if inside_project:
            return f'add "{relative}" to outputs of {key} in {file}'
        return f'add "{_write_area(path, policy)}" to sandbox.write of {key} in {file}'
    if inside_project:
        return f'add "{relative}" to inputs of {key} in {file}'
    if path.startswith(policy.root.rstrip("/") + "/"):
        in_git = path.startswith(os.path.join(policy.root, ".git") + "/")
        if not in_git and not any(path.startswith(d.rstrip("/") + "/") for d in policy.member_dirs):
            # A root file (shared tool configuration ...): an input, so that it is in the key.
            rooted = "//" + os.path.relpath(path, policy.root)
            if policy.own_inputs is None:  # inputs unset: keep the whole project
                return f'set inputs = ["**", "{rooted}"] in {key} of {file}'
            return f'add "{rooted}" to inputs of {key} in {file}'
        return f'add "{relative}" to sandbox.read of {key} in {file}'
    return f'add "{path}" to read of [tool.vx.sandbox]'


def _write_area(path: str, policy: Policy) -> str:
    """Where a write outside the project should be allowed: below the workspace root, the
    top directory it went to (a tool cache such as ``.ruff_cache`` writes ever new names)."""
    if not path.startswith(policy.root.rstrip("/") + "/"):
        return path
    if any(path.startswith(d.rstrip("/") + "/") for d in policy.member_dirs):
        return os.path.relpath(path, policy.project_dir)  # another project's file: just it
    top = os.path.join(policy.root, os.path.relpath(path, policy.root).split(os.sep)[0])
    return os.path.relpath(top if os.path.isdir(top) else path, policy.project_dir)


def _resolved(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def _violations(
    accesses: Iterable[Access], policy: Policy, task_name: str, file: str, *, enforced: bool
) -> list[Violation]:
    found: dict[tuple[str, str], Violation] = {}
    for access in accesses:
        if access.kind == "net":
            if policy.network is True or (
                policy.network == "loopback" and _is_loopback(access.target)
            ):
                continue
            unix_path = access.target[5:] if access.target.startswith("unix /") else None
            if unix_path is not None and not os.path.exists(unix_path):
                continue  # a probe for a daemon that is not there (nscd ...)
            # Without network every attempt is denied: by the filter (EACCES) or, under
            # bwrap, by an empty namespace where even a "successful" UDP connect leads nowhere.
            fix = _fix(policy, task_name, "net", access.target, file)
            shown = f"{access.operation} {access.target}"
            found.setdefault(("net", access.target), Violation("net", shown, shown, fix))
            continue
        if access.kind == "link":
            access = Access("write", access.target, access.error)  # writes reach the source
        if enforced and access.error in _DENIALS and _PROC_PID.match(access.target):
            fix = "tasks see only declared environment variables; declare it in env or pass_env"
            found.setdefault(
                ("read", access.target), Violation("read", access.target, access.target, fix)
            )
            continue
        if enforced:
            # bwrap: what is not mounted is absent (ENOENT) though it exists on the host
            hidden = access.error == "ENOENT" and (
                os.path.lexists(access.target)
                or (access.kind == "write" and os.path.isdir(os.path.dirname(access.target)))
            )
            if access.error not in _DENIALS and not hidden:
                continue
        elif access.error is not None or access.kind == "list":
            continue  # audit: a failed probe (a missing file) or a listing is not an input
        resolved = _resolved(access.target)
        if access.kind == "write":
            allowed = policy.may_write(resolved)
        elif access.kind == "list":
            # Listing denials are reported inside the workspace only: interpreters probe
            # many directories (sys.path entries) and carry on when they cannot list them.
            allowed = (
                policy.may_read(resolved)
                or resolved in policy.listable
                or not resolved.startswith(policy.root.rstrip("/") + "/")
            )
        else:
            allowed = policy.may_read(resolved)
        if allowed:
            continue
        kind = "read" if access.kind == "exec" else access.kind
        fix = _fix(policy, task_name, kind, resolved, file)
        found.setdefault((kind, access.target), Violation(kind, access.target, resolved, fix))
    return list(found.values())


def _collapse(violations: list[Violation]) -> list[Violation]:
    """A directory the task created stands for everything written inside it."""
    directories = {
        v.resolved for v in violations if v.kind == "write" and os.path.isdir(v.resolved)
    }
    kept: list[Violation] = []
    for violation in violations:
        if violation.kind == "write" and any(
            violation.resolved.startswith(d + "/") for d in directories
        ):
            continue
        if violation.kind == "write" and violation.resolved in directories:
            fix = violation.fix.replace('" to outputs', '/**" to outputs', 1)
            violation = Violation(violation.kind, violation.target, violation.resolved, fix)
        kept.append(violation)
    return kept


def denied(
    accesses: Iterable[Access], policy: Policy, task_name: str, file: str
) -> list[Violation]:
    """Accesses the confinement refused (from a traced re-run of a failed task)."""
    return _violations(accesses, policy, task_name, file, enforced=True)


def undeclared(
    accesses: Iterable[Access], policy: Policy, task_name: str, file: str
) -> list[Violation]:
    """Successful accesses outside the declarations (audit mode)."""
    return _collapse(_violations(accesses, policy, task_name, file, enforced=False))


def format_violations(title: str, violations: list[Violation], root: str) -> str:
    lines = [title] + [f"  {v.describe(root)}" for v in violations]
    return "\n".join(lines) + "\n"
