"""Artifact archives: a zstd-compressed tar of ``.vx-artifact/meta.json``, the task's log and
its declared outputs (paths relative to the workspace root).

Unpacking trusts nothing: every member is checked (relative, no ``..``, inside the task's
declared outputs, no device files, links that stay inside the outputs), the expanded size is
bounded, and files are staged first so that a bad archive writes nothing. Regular files are
streamed into new staged files (``O_EXCL | O_NOFOLLOW``, in directories the restore created)
until the first link; links and everything after one go through tarfile's "data" filter.
Staged files are moved into place with ``os.replace`` (no copy).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vx.globs import GlobSet
from vx.keys import CACHE_FORMAT
from vx.outputs import (
    Restored,
    compare_outputs,
    output_globs,
    output_paths,
    outputs_current,
)
from vx.statedir import make_dirs

if TYPE_CHECKING:
    from vx.graph import Task

__all__ = ["ArtifactError", "Restored", "pack", "pack_into", "read_meta", "unpack"]

META_NAME = ".vx-artifact/meta.json"
LOG_NAME = ".vx-artifact/log"
#: The last member: output path -> blake3 digest of every regular file.
DIGESTS_NAME = ".vx-artifact/digests.json"
#: Largest accepted metadata member.
_META_LIMIT = 64 << 20
#: Largest accepted ratio between expanded and compressed size (zip-bomb guard): zstd's own
#: ceiling (a <=128 KB block takes at least 4 bytes), so no genuine archive is refused,
#: e.g. a file of zeros (~32000:1). What is actually read is bounded by ``expanded_size``.
_MAX_RATIO = 1 << 15
_SLACK = 1 << 20
#: Expanded size from which archives are compressed on zstd's worker threads.
_THREADED_FROM = 4 << 20
#: Chunk size of the copies into staged files and of the decompressed stream.
_COPY_BUFFER = 1 << 20
_BLOCK = 512
#: The packing buffer: a batch of up to ``_COPY_BUFFER`` plus the file that ends it.
_BATCH = 2 * _COPY_BUFFER + 2 * _BLOCK
_ZEROS = bytes(2 * _BLOCK)
#: A ustar header after its link name: magic, version, empty owner names, device numbers 0,
#: empty prefix, padding.
_USTAR_TAIL = b"ustar\x0000" + bytes(64) + b"0000000\x000000000\x00" + bytes(167)
#: Staged file names: unique per process (with the pid) and per restore (the counter).
_TOKEN = os.urandom(4).hex()
_COUNTER = itertools.count()


class ArtifactError(Exception):
    """The archive is corrupt, truncated or hostile."""


def _ustar(name: str, kind: bytes, size: int, mode: int, mtime: int, link: str = "") -> bytes:
    """The tar header of one member: a plain ustar block when every field fits (no owner
    names or ids: a restore never sets owners), else tarfile's pax form of it."""
    encoded = name.encode("utf-8", "surrogateescape")
    target = link.encode("utf-8", "surrogateescape")
    if (
        len(encoded) > 100
        or len(target) > 100
        or not (encoded.isascii() and target.isascii())
        or size >= 8**11
        or not 0 <= mtime < 8**11
    ):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime, info.linkname = kind, size, mode, mtime, link
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    head = b"%s%07o\x000000000\x000000000\x00%011o\x00%011o\x00" % (
        encoded.ljust(100, b"\0"),
        mode,
        size,
        mtime,
    )
    tail = kind + target.ljust(100, b"\0") + _USTAR_TAIL
    return b"%s%06o\x00 %s" % (head, sum(head) + sum(tail) + 256, tail)


class _TarWriter:
    """Writes a tar stream in big writes through one reused buffer: headers and small files
    are gathered in it (files read straight into it, and hashed there), big files are
    copied through it in ``_COPY_BUFFER`` chunks. What the sink (zstd's stream writer) was
    given is consumed before its ``write`` returns, so the buffer can be reused."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.view = memoryview(bytearray(_BATCH))
        self.pending = 0

    def _add(self, data: bytes) -> None:
        end = self.pending + len(data)
        if end > len(self.view):
            self.flush()
            if len(data) > len(self.view):
                self.sink.write(data)
                return
            end = len(data)
        self.view[self.pending : end] = data
        self.pending = end

    def flush(self) -> None:
        if self.pending:
            self.sink.write(self.view[: self.pending])
            self.pending = 0

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644, mtime: int = 0) -> None:
        self._add(_ustar(name, tarfile.REGTYPE, len(data), mode, mtime))
        self._add(data)
        self._add(_ZEROS[: -len(data) % _BLOCK])
        if self.pending >= _COPY_BUFFER:
            self.flush()

    def add_link(self, name: str, kind: bytes, target: str, mode: int) -> None:
        self._add(_ustar(name, kind, 0, mode, 0, target))

    def add_file(self, path: str, name: str, size: int, mode: int, mtime: int) -> str:
        """Add the file at ``path`` (exactly ``size`` bytes, as listed); returns its digest."""
        import blake3

        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            self._add(_ustar(name, tarfile.REGTYPE, size, mode, mtime))
            if size < _COPY_BUFFER:
                if self.pending + size + _BLOCK + 1 > len(self.view):
                    self.flush()
                start = self.pending
                end = start + size
                # One byte more than listed: a file that grew is seen here.
                got = os.readv(fd, [self.view[start : end + 1]])
                if got < size:
                    got += os.readv(fd, [self.view[start + got : end + 1]])
                if got != size:
                    raise OSError(f"{name} changed while it was archived")
                digest = blake3.blake3(self.view[start:end]).hexdigest()
                padding = -size % _BLOCK
                self.view[end : end + padding] = _ZEROS[:padding]
                self.pending = end + padding
                if self.pending >= _COPY_BUFFER:
                    self.flush()
                return digest
            self.flush()
            hasher = blake3.blake3()
            left = size
            while left > 0:
                chunk = self.view[: min(left, _COPY_BUFFER)]
                got = os.readv(fd, [chunk])
                if not got:
                    raise OSError(f"{name} changed while it was archived")
                hasher.update(chunk[:got])
                self.sink.write(chunk[:got])
                left -= got
            if os.read(fd, 1):
                raise OSError(f"{name} changed while it was archived")
            self._add(_ZEROS[: -size % _BLOCK])
            return hasher.hexdigest()
        finally:
            os.close(fd)

    def close(self) -> None:
        self._add(_ZEROS[: 2 * _BLOCK])
        self.flush()


def pack(
    task: Task,
    root: Path,
    log: bytes,
    meta: dict[str, Any],
    level: int = 3,
    ignored: frozenset[str] = frozenset(),
) -> tuple[bytes, dict[str, Any]]:
    """Build the compressed archive of ``task``'s outputs, log and ``meta`` in memory;
    returns it with the recorded output listing (see :func:`pack_into`)."""
    raw = io.BytesIO()
    outputs = pack_into(raw, task, root, log, meta, level, ignored)
    return raw.getvalue(), outputs


def pack_into(
    sink: IO[bytes],
    task: Task,
    root: Path,
    log: bytes,
    meta: dict[str, Any],
    level: int = 3,
    ignored: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Write the compressed archive of ``task``'s outputs, log and ``meta`` to ``sink``;
    returns the recorded output listing (path -> type, size, mtime, mode, digest).
    ``ignored``: workspace-relative paths (files or directories) a tool said are not results.

    One pass over the tree: the listing at the head of the archive comes from ``lstat``
    alone, and each file's digest is taken while it is read into the stream; the digests
    follow the outputs as the last member (``.vx-artifact/digests.json``)."""
    import zstandard

    cut = len(str(root)) + 1
    outputs: dict[str, Any] = {}
    files: list[tuple[str, str, os.stat_result]] = []
    for path in output_paths(task):
        name = path[cut:]
        if _ignored(name, ignored):
            continue
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            outputs[name] = {"type": "symlink", "target": os.readlink(path)}
            continue
        mode = stat.S_IMODE(st.st_mode)
        outputs[name] = {
            "type": "file",
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "mode": mode,
        }
        files.append((path, name, st))
    expanded = sum(entry.get("size", 0) for entry in outputs.values()) + len(log)
    meta = {**meta, "format": CACHE_FORMAT, "outputs": outputs, "expanded_size": expanded}
    # zstd's own worker threads for anything big (compression then overlaps reading).
    threads = -1 if expanded > _THREADED_FROM else 0
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
    digests: dict[str, str] = {}
    with compressor.stream_writer(sink, closefd=False) as writer:
        tar = _TarWriter(writer)
        tar.add_bytes(META_NAME, json.dumps(meta, sort_keys=True).encode())
        tar.add_bytes(LOG_NAME, log)
        # Regular files first, then hardlinks to them, then symlinks: a restore streams
        # every file before the first link into place itself.
        inodes: dict[tuple[int, int], str] = {}
        hardlinks: list[tuple[str, str]] = []
        for path, name, st in files:
            if st.st_nlink > 1:
                first = inodes.setdefault((st.st_dev, st.st_ino), name)
                if first != name:
                    hardlinks.append((name, first))
                    continue
            digests[name] = tar.add_file(
                path, name, st.st_size, outputs[name]["mode"], st.st_mtime_ns // 1_000_000_000
            )
        for name, first in hardlinks:
            tar.add_link(name, tarfile.LNKTYPE, first, outputs[name]["mode"])
            digests[name] = digests[first]
        for name, entry in outputs.items():
            if entry["type"] == "symlink":
                tar.add_link(name, tarfile.SYMTYPE, entry["target"], 0o777)
        tar.add_bytes(DIGESTS_NAME, json.dumps(digests, sort_keys=True).encode())
        tar.close()
    for name, digest in digests.items():
        outputs[name]["digest"] = digest
    return outputs


def _ignored(name: str, ignored: frozenset[str]) -> bool:
    if not ignored:
        return False
    parts = name.split("/")
    return any("/".join(parts[:end]) in ignored for end in range(1, len(parts) + 1))


class _BoundedReader(io.RawIOBase):
    """Raises once more than ``limit`` bytes were read (the limit may be raised later)."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise ArtifactError(f"archive expands beyond {self.limit} bytes")
        buffer[: len(data)] = data
        return len(data)


def _open(data: bytes) -> tuple[_BoundedReader, tarfile.TarFile]:
    import zstandard

    stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    bounded = _BoundedReader(stream, _META_LIMIT + 4096)
    # tarfile's stream keeps its default block size: its buffer is re-sliced on every read
    # and write, so a big one costs a copy of itself per 16 KB chunk.
    reader = io.BufferedReader(bounded, _COPY_BUFFER)
    return bounded, tarfile.open(fileobj=reader, mode="r|")


def _members(data: bytes) -> Iterator[tuple[_BoundedReader, tarfile.TarFile, tarfile.TarInfo]]:
    import zstandard

    try:
        bounded, tar = _open(data)
        with tar:
            for member in tar:
                yield bounded, tar, member
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise ArtifactError(f"corrupt archive: {type(exc).__name__}: {exc}") from None


def read_meta(data: bytes, compressed: int | None = -1) -> dict[str, Any]:
    """The metadata member (always the first one). ``data`` may be only the head of the
    archive (then ``compressed=None``: the whole size, which bounds the declared expanded
    size, is not known; default: ``len(data)``)."""
    import zstandard

    for _, tar, member in _members(data):
        try:
            return _parse_meta(tar, member, len(data) if compressed == -1 else compressed)
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise ArtifactError(f"corrupt archive: {type(exc).__name__}: {exc}") from None
    raise ArtifactError("empty archive")


def _parse_meta(
    tar: tarfile.TarFile, member: tarfile.TarInfo, compressed: int | None
) -> dict[str, Any]:
    if member.name != META_NAME or not member.isfile() or member.size > _META_LIMIT:
        raise ArtifactError("archive does not start with its metadata")
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        meta = json.loads(handle.read())
    except ValueError as exc:
        raise ArtifactError(f"unreadable metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise ArtifactError("unknown artifact format")
    expanded = meta.get("expanded_size")
    if not isinstance(expanded, int) or expanded < 0:
        raise ArtifactError("metadata lacks a valid expanded_size")
    if compressed is not None and expanded > max(compressed, 1) * _MAX_RATIO + _SLACK:
        raise ArtifactError(
            f"declared expanded size {expanded} is implausible for {compressed} compressed bytes"
        )
    return meta


def unpack(
    data: bytes,
    task: Task,
    root: Path,
    staging_parent: Path,
    meta: dict[str, Any] | None = None,
    accept: Callable[[dict[str, Any]], None] | None = None,
) -> Restored:
    """Validate the archive and restore the task's outputs; returns the metadata and log.
    ``meta``: what :func:`read_meta` returned for the same ``data`` (not parsed again).
    ``accept``: called with the metadata as soon as it is read, before anything is
    extracted; what it raises propagates (e.g. a fingerprint that no longer holds)."""
    import zstandard

    staging = _Staging(staging_parent)
    try:
        return _unpack(data, task, root, staging, meta, accept=accept)
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        # tarfile's own "data" filter, a stream error while reading a member, a failed rename.
        raise ArtifactError(f"corrupt or hostile archive: {type(exc).__name__}: {exc}") from None
    finally:
        staging.cleanup()


class _Staging:
    """Where a restore stages what it extracts before moving it into place.

    Regular files streamed by the restore are staged *flat*: uniquely named files directly in
    ``parent`` (``.vx/tmp``), so a restore of plain files creates and removes no directory
    (a fresh clone restores hundreds of small artifacts, and directory operations in one
    shared directory were most of their staging cost). Members tarfile extracts (links, and
    everything after the first one) need a tree: a temporary directory is then created, and
    the flat files staged so far are moved into it at their names first, so that links are
    resolved among all the staged members."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._tree: Path | None = None
        self._directories: dict[str, str] = {}
        """Archive directory -> staged directory in the tree, each created once."""
        self.files: dict[str, str] = {}
        """Member name -> its staged path (flat, or in the tree once there is one)."""
        self.emptied = False
        """Every staged file was moved out: only the tree's directories are left."""

    def create(self, name: str) -> int:
        """A new, exclusively created staged file for member ``name``: its descriptor."""
        path = f"{self.parent}/.restore-{os.getpid()}-{_TOKEN}-{next(_COUNTER)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            make_dirs(self.parent)
            fd = os.open(path, flags, 0o600)
        self.files[name] = path
        return fd

    def link(self, name: str, target: str) -> None:
        """Stage member ``name`` as a hardlink to the staged file of member ``target``."""
        path = f"{self.parent}/.restore-{os.getpid()}-{_TOKEN}-{next(_COUNTER)}"
        os.link(self.files[target], path)
        self.files[name] = path

    @property
    def tree(self) -> Path:
        """The staged tree (created, and the flat files moved into it, on first use)."""
        if self._tree is None:
            make_dirs(self.parent)
            self._tree = Path(tempfile.mkdtemp(prefix="restore-", dir=self.parent))
            for name, path in self.files.items():
                placed = os.path.join(self.directory_for(name), posixpath.basename(name))
                os.replace(path, placed)
                self.files[name] = placed
        return self._tree

    def source(self, name: str) -> str:
        """Where member ``name`` is staged."""
        found = self.files.get(name)
        return found if found is not None else os.path.join(self.tree, name)

    def directory_for(self, name: str) -> str:
        """The staged directory of member ``name`` in the tree (created with its parents)."""
        parent = posixpath.dirname(name)
        found = self._directories.get(parent)
        if found is None:
            found = os.path.join(self.tree, parent)
            os.makedirs(found, exist_ok=True)
            self._directories[parent] = found
        return found

    def cleanup(self) -> None:
        if not self.emptied:
            for staged_file in self.files.values():
                with contextlib.suppress(OSError):
                    os.unlink(staged_file)
        if self._tree is None:
            return
        if self.emptied and self._directories:
            # Only the directories this restore created are left: remove them deepest
            # first (rmdir fails, and rmtree takes over, should anything else be there).
            staged = {self._tree}
            for directory in self._directories.values():
                path = Path(directory)
                while path != self._tree and path not in staged:
                    staged.add(path)
                    path = path.parent
            try:
                for path in sorted(staged, key=lambda p: len(p.parts), reverse=True):
                    os.rmdir(path)
                return
            except OSError:
                pass
        shutil.rmtree(self._tree, ignore_errors=True)


def _unpack(
    data: bytes,
    task: Task,
    root: Path,
    staging: _Staging,
    known: dict[str, Any] | None,
    check: bool = True,
    accept: Callable[[dict[str, Any]], None] | None = None,
) -> Restored:
    """``check``: first compare the outputs in place with the entry's (skipping the
    extraction when they are current)."""
    spec = output_globs(task)
    project = task.project.path
    project_rel = "" if project == root else project.relative_to(root).as_posix() + "/"
    meta: dict[str, Any] | None = None
    log = b""
    staged: list[tuple[str, tarfile.TarInfo]] = []
    links = False
    written: set[str] = set()
    """Staged by _write_member (permission bits and mtime already recorded ones)."""
    for bounded, tar, member in _members(data):
        if meta is None:
            if known is not None and member.name == META_NAME and member.isfile():
                meta = known
            else:
                meta = _parse_meta(tar, member, len(data))
                if accept is not None:
                    accept(meta)
            members = len(meta.get("outputs", {})) + 2
            bounded.limit = member.size + meta["expanded_size"] + members * 8192 + _SLACK
            current = compare_outputs(task, root, meta) if check else False
            if current is not False:
                # The outputs in place may be current: the rest of the archive is read (not
                # extracted) for the log and the digests, which decide when mtimes differ.
                log = _read_rest(tar, meta)
                if current or outputs_current(task, root, meta):
                    return Restored(meta, log, extracted=False)
                # They differ after all: extract, reading the archive again.
                return _unpack(data, task, root, staging, meta, check=False)
            continue
        if member.name == LOG_NAME and member.isfile():
            log = _read_member(tar, member)
            continue
        if member.name == DIGESTS_NAME and member.isfile():
            _add_digests(meta, _read_member(tar, member))
            continue
        name = _check_member(member, project_rel, spec, meta)
        if member.isdir():
            continue
        if member.isfile() and not links:
            _write_member(tar, member, staging, name, meta["outputs"][name])
            written.add(name)
        elif member.islnk() and not links and member.linkname in written:
            # A hardlink to a file staged above (which has its mode and mtime already).
            staging.link(name, member.linkname)
            written.add(name)
        else:
            # Links, and everything after the first one (a staged link could redirect a
            # later member's directory): tarfile's own "data" filter checks each path.
            links = True
            tar.extract(member, staging.tree, set_attrs=True, filter="data")
        staged.append((name, member))
    if meta is None:
        raise ArtifactError("empty archive")
    if links:
        _check_staged_links(staging.tree, staged, project_rel, spec)
    _install(task, root, staging, staged, written, meta["outputs"])
    staging.emptied = True
    return Restored(meta, log, extracted=True)


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, staging: _Staging, name: str, entry: Any
) -> None:
    """Stage a regular file: validated name, new file (never through a link), recorded
    permission bits (never setuid, setgid or sticky) and mtime set on the staged copy."""
    source = tar.extractfile(member)
    assert source is not None
    fd = staging.create(name)
    with open(fd, "wb", buffering=0) as handle:
        shutil.copyfileobj(source, handle, _COPY_BUFFER)
        os.fchmod(fd, member.mode & 0o777)
        recorded = entry.get("mtime_ns") if isinstance(entry, dict) else None
        when = recorded if isinstance(recorded, int) else int(member.mtime) * 1_000_000_000
        os.utime(fd, ns=(when, when))


def _check_staged_links(
    staging: Path, staged: list[tuple[str, tarfile.TarInfo]], project_rel: str, spec: GlobSet
) -> None:
    """Each symlink checked alone stays inside the outputs, but a chain can still escape
    (``a/s -> .`` then ``x -> a/s/s/../../..``): resolve every one among all the staged
    members, as it will resolve once installed."""
    base = os.path.realpath(staging)
    for name, member in staged:
        if not member.issym():
            continue
        resolved = os.path.relpath(os.path.realpath(staging / name), base).replace(os.sep, "/")
        inside = resolved != ".." and not resolved.startswith(("../", "/"))
        if (
            not inside
            or not resolved.startswith(project_rel)
            or not spec.match(resolved[len(project_rel) :])
        ):
            raise ArtifactError(
                f"refusing link {name!r} -> {member.linkname!r}: through other links it "
                "escapes the task's outputs"
            )


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def _read_rest(tar: tarfile.TarFile, meta: dict[str, Any]) -> bytes:
    """The log, and the digests into ``meta``, from the rest of the archive (read, not
    extracted: the outputs in place are current)."""
    log = b""
    for member in tar:
        if member.name == LOG_NAME and member.isfile():
            log = _read_member(tar, member)
        elif member.name == DIGESTS_NAME and member.isfile():
            _add_digests(meta, _read_member(tar, member))
    return log


def _add_digests(meta: dict[str, Any], data: bytes) -> None:
    """Put the trailing digests member's digests into the listing of ``meta``."""
    try:
        digests = json.loads(data)
    except ValueError as exc:
        raise ArtifactError(f"unreadable digests: {exc}") from None
    if not isinstance(digests, dict):
        raise ArtifactError("unreadable digests: not a mapping")
    outputs = meta.get("outputs", {})
    for name, digest in digests.items():
        entry = outputs.get(name)
        if (
            not isinstance(entry, dict)
            or entry.get("type") != "file"
            or not isinstance(digest, str)
        ):
            raise ArtifactError(f"digests name {name!r}, which is not one of the archived files")
        entry["digest"] = digest


def _check_member(
    member: tarfile.TarInfo, project_rel: str, spec: GlobSet, meta: dict[str, Any]
) -> str:
    name = member.name
    normalized = posixpath.normpath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or normalized.startswith("..")
        or ".." in name.split("/")
        or normalized != name.rstrip("/")
    ):
        raise ArtifactError(f"refusing unsafe path {name!r}")
    if not (member.isfile() or member.issym() or member.islnk() or member.isdir()):
        raise ArtifactError(f"refusing special file {name!r}")
    if not normalized.startswith(project_rel):
        raise ArtifactError(f"refusing {name!r}: outside the task's project")
    relative = normalized[len(project_rel) :]
    if member.isdir():
        return normalized
    if not spec.match(relative) or normalized not in meta.get("outputs", {}):
        raise ArtifactError(f"refusing {name!r}: not one of the task's declared outputs")
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/") or "\\" in target:
            raise ArtifactError(f"refusing link {name!r} -> {target!r}: absolute target")
        if member.issym():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(normalized), target))
        else:
            resolved = posixpath.normpath(target)
        inside = resolved.startswith(project_rel) and not resolved.startswith("..")
        if not inside or not spec.match(resolved[len(project_rel) :]):
            raise ArtifactError(
                f"refusing link {name!r} -> {target!r}: it escapes the task's outputs"
            )
    return normalized


def _install(
    task: Task,
    root: Path,
    staging: _Staging,
    staged: list[tuple[str, tarfile.TarInfo]],
    written: set[str],
    outputs: dict[str, Any],
) -> None:
    """Replace the task's current outputs by the staged ones."""
    project = str(task.project.path)
    for path in output_paths(task):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    checked: set[str] = set()
    """Destination directories created and found inside the project (forgotten whenever a
    link is installed, since it could redirect one)."""
    for name, member in staged:
        destination = os.path.join(root, name)
        parent = os.path.dirname(destination)
        if parent not in checked:
            if not _inside(project, parent):
                raise ArtifactError(f"refusing {name!r}: its directory leads outside the project")
            os.makedirs(parent, exist_ok=True)
            checked.add(parent)
        try:
            if stat.S_ISDIR(os.lstat(destination).st_mode):
                shutil.rmtree(destination)
        except FileNotFoundError:
            pass
        os.replace(staging.source(name), destination)
        if member.issym():
            checked.clear()
        elif name not in written:
            # Extracted by tarfile's "data" filter, which drops group/other write bits and
            # adds owner rw: put the recorded permission bits back (never setuid, setgid or
            # sticky) and the recorded mtime (the next restore then sees the outputs as
            # current from stat alone).
            os.chmod(destination, member.mode & 0o777)
            recorded = outputs[name].get("mtime_ns")
            if isinstance(recorded, int):
                os.utime(destination, ns=(recorded, recorded))


def _inside(project: str, directory: str) -> bool:
    """Whether ``directory`` (below the project's path) is, or will be once created, inside
    the project: every directory on the way down that exists is a plain directory (one
    ``lstat`` each; the missing ones will be created as such), or else, through links, its
    real path is under the project's. Checked before anything is created."""
    if directory == project or directory.startswith(project + "/"):
        path = project
        for part in directory[len(project) + 1 :].split("/"):
            path = f"{path}/{part}" if part else path
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return True
            if not stat.S_ISDIR(mode):  # a link (or not a directory)
                break
        else:
            return True
    real = Path(os.path.realpath(directory))
    resolved = Path(project).resolve()
    return real == resolved or resolved in real.parents
