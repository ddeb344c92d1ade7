"""What runs inside a Dask worker (imported there by reference, so it must stay importable
without the client): check the checkout, restore the dependencies' outputs from the shared
remote cache, run the command while streaming its output to the client, upload the outputs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vx
from vx_dask.checkout import CheckoutError, changes, revision, toplevel

if TYPE_CHECKING:
    from vx_remote.client import RemoteCache
    from vx_remote.target import RemoteTarget

#: Worker environment variable naming its checkout (default: the worker's working directory).
CHECKOUT_ENV = "VX_DASK_CHECKOUT"
#: Variables describing the machine rather than the task: a worker uses its own values.
MACHINE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV")
#: Seconds between SIGTERM and SIGKILL when the client cancels a running task.
GRACE_PERIOD = 5.0

_lock = threading.Lock()
_running: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
_cancelled: set[tuple[str, str]] = set()
#: Revision -> checkout top level, once that checkout passed :func:`inspect`.
_verified: dict[str, Path] = {}
_remotes: dict[tuple[RemoteTarget, str | None], RemoteCache] = {}
#: Artifact keys whose outputs this process already restored or produced in its checkout.
_present: set[str] = set()


@dataclass(frozen=True, slots=True)
class Job:
    """One task, as the client sends it (paths are the client's; the worker re-roots them)."""

    run_id: str
    task: vx.Task
    dependencies: tuple[vx.Task, ...]
    """Cacheable dependencies (transitive) whose outputs the command may read."""
    argv: list[str]
    cwd: str
    env: dict[str, str]
    client_root: str
    """The client's workspace root."""
    subdir: str
    """The workspace root relative to the repository's top level (``"."`` at the top)."""
    revision: str
    remote: RemoteTarget


def checkout_top() -> Path:
    return toplevel(Path(os.environ.get(CHECKOUT_ENV) or os.getcwd()))


def inspect(expected: str, dask_worker: Any = None) -> dict[str, Any]:
    """Run on every worker by the client (``Client.run``): is its checkout usable?"""
    report: dict[str, Any] = {
        "name": getattr(dask_worker, "name", "?"),
        "resources": dict(getattr(getattr(dask_worker, "state", None), "total_resources", {})),
        "problem": None,
    }
    try:
        top = checkout_top()
        report["checkout"] = str(top)
        head = revision(top)
        if head != expected:
            report["problem"] = (
                f"its checkout {top} is at revision {head[:12]}, the client's is "
                f"{expected[:12]} (check out the same commit on the worker)"
            )
            return report
        modified = changes(top, untracked=False)
        if modified:
            report["problem"] = (
                f"its checkout {top} has uncommitted changes ({', '.join(modified[:5])})"
            )
    except CheckoutError as exc:
        report["problem"] = f"{exc} (start the worker inside a checkout, or set {CHECKOUT_ENV})"
    return report


def cancel(run_id: str, task_ids: list[str]) -> int:
    """Run on every worker by the client (``Client.run``): stop these tasks' process groups
    (SIGTERM, SIGKILL after :data:`GRACE_PERIOD`); tasks not started yet will not start.
    Returns how many were running here."""
    with _lock:
        _cancelled.update((run_id, task_id) for task_id in task_ids)
        processes = [p for t in task_ids if (p := _running.get((run_id, t))) is not None]
    for process in processes:
        _signal(process.pid, signal.SIGTERM)
        timer = threading.Timer(GRACE_PERIOD, _signal, (process.pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()
    return len(processes)


def _signal(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def rebase(value: str, old: str, new: str) -> str:
    """``value`` with the client's root prefix replaced by the worker's."""
    if value == old:
        return new
    if value.startswith(old + os.sep):
        return new + value[len(old) :]
    return value


def local_task(task: vx.Task, root: Path) -> vx.Task:
    """The client's ``task`` with its project re-rooted in this checkout."""
    relpath = task.project.relpath
    path = root if relpath == "." else root / relpath
    project = replace(task.project, path=path, tasks={})
    return vx.Task(task.id, project, task.definition, hash=task.hash)


def _remote(target: RemoteTarget) -> RemoteCache:
    """One client per target and process (creating an httpx client costs ~0.1 s of CPU);
    a failure seen by an earlier task does not disable it for the next one."""
    from vx_remote.client import RemoteCache

    token = target.token(os.environ)
    ident = (target, token)
    with _lock:
        remote = _remotes.get(ident)
        if remote is None:
            remote = _remotes[ident] = RemoteCache(
                target.url,
                target.team,
                token,
                read=True,
                write=True,
                timeout=target.timeout,
                upload_timeout=target.upload_timeout,
                signature_key=target.signature_key(os.environ),
            )
        remote.disabled = None
    return remote


def run_task(job: Job) -> dict[str, Any]:
    """The Dask task: returns ``{"code", "worker", "stored", "sent", "attempt"}``."""
    from distributed import get_worker

    worker = get_worker()
    name = str(worker.name)
    attempt = os.urandom(6).hex()
    topic = f"vx-{job.run_id}"
    sent = 0

    def emit(data: bytes) -> None:
        nonlocal sent
        sent += len(data)
        worker.log_event(
            topic, {"kind": "output", "task": job.task.id, "attempt": attempt, "data": data}
        )

    worker.log_event(
        topic, {"kind": "start", "task": job.task.id, "attempt": attempt, "worker": name}
    )

    def finish(code: int, stored: bool = False) -> dict[str, Any]:
        return {"code": code, "worker": name, "stored": stored, "sent": sent, "attempt": attempt}

    top = _verified.get(job.revision)
    if top is None:
        report = inspect(job.revision, worker)
        if report["problem"]:
            emit(f"vx: dask worker {name} refused the task: {report['problem']}\n".encode())
            return finish(1)
        top = _verified[job.revision] = Path(report["checkout"])
    root = Path(os.path.normpath(top / job.subdir))
    remote = _remote(job.remote)
    for dependency in job.dependencies:
        problem = _restore(remote, local_task(dependency, root), root)
        if problem:
            emit(f"vx: dask worker {name}: {problem}\n".encode())
            return finish(1)
    code, log, took = _run(job, root, emit)
    if code != 0:
        return finish(code)
    task = local_task(job.task, root)
    try:
        artifact = vx.pack_outputs(task, root, log, took)
        remote.put(artifact.key, artifact)
    except Exception as exc:
        emit(
            f"vx: dask worker {name} could not store the outputs in the remote cache: "
            f"{exc}\n".encode()
        )
        return finish(1)
    _present.add(artifact.key)
    return finish(0, stored=True)


def _restore(remote: RemoteCache, task: vx.Task, root: Path) -> str | None:
    """Put ``task``'s outputs in place from the remote cache; returns a problem or None."""
    key = task.hash
    if key is None or key in _present:
        return None
    try:
        artifact = remote.get(key)
    except Exception as exc:
        return f"cannot read the outputs of {task.id} from the remote cache: {exc}"
    if artifact is None:
        return (
            f"the outputs of {task.id} ({key[:16]}) are not in the remote cache "
            "(was it cached only locally? run it once with the remote cache writable)"
        )
    try:
        vx.restore_outputs(task, root, artifact.data)
    except (ValueError, OSError) as exc:
        return f"cannot restore the outputs of {task.id}: {exc}"
    _present.add(key)
    return None


def _run(job: Job, root: Path, emit: Any) -> tuple[int, bytes, float]:
    old = job.client_root
    new = str(root)
    env = {name: rebase(value, old, new) for name, value in job.env.items()}
    for name in MACHINE_ENV:
        env.pop(name, None)
        if name in os.environ:
            env[name] = os.environ[name]
    argv = [rebase(arg, old, new) for arg in job.argv]
    cwd = rebase(job.cwd, old, new)
    ident = (job.run_id, job.task.id)
    log = bytearray()
    start = time.monotonic()
    with _lock:
        if ident in _cancelled:
            return 143, b"", 0.0
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            message = f"vx: cannot start {argv[0]} in {cwd}: {exc.strerror}\n".encode()
            emit(message)
            return 127, message, 0.0
        _running[ident] = process
    try:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            log.extend(chunk)
            emit(chunk)
        code = process.wait()
    finally:
        with _lock:
            _running.pop(ident, None)
        if process.stdout is not None:
            process.stdout.close()
    took = (time.monotonic() - start) * 1000
    return (128 - code if code < 0 else code), bytes(log), took
