"""Artifact archives as vx writes them (issue 16): one pass over the outputs, digests as the
last member, a plain tar any ``tar`` lists, trees restored byte- and mode-identical, a format
change turning the other version's entries into misses, and a truncated archive that is a
miss leaving nothing behind."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from vx_cache.store import LocalCache

from vx import Artifact
from vx.artifacts import DIGESTS_NAME, LOG_NAME, META_NAME, read_meta
from vx.testing import VxWorkspace
from vx.testing import snapshot_tree as snapshot

Make = Callable[[dict[str, Any]], VxWorkspace]

LONG = "a-directory-name-long-enough/" * 4 + "and-a-file-name-past-one-hundred-bytes.txt"

#: Many small files, big files (over the 1 MB copy buffer), empty and block-sized files, a
#: name over ustar's 100 bytes, a non-ASCII name, modes, a symlink and a hardlink.
BUILD = (
    'python3 -c "'
    "import os, random\n"
    "r = random.Random(7)\n"
    "for i in range(1500):\n"
    "    d = f'dist/small/d{i // 100:02d}'\n"
    "    os.makedirs(d, exist_ok=True)\n"
    "    open(f'{d}/f{i:04d}.txt', 'w').write(str(i) * r.randint(1, 900))\n"
    "open('dist/big.bin', 'wb').write(r.randbytes(3 << 20) + bytes(2 << 20))\n"
    "open('dist/empty', 'wb').close()\n"
    "open('dist/block', 'wb').write(bytes(range(256)) * 2)\n"
    f"os.makedirs(os.path.dirname('dist/{LONG}'), exist_ok=True)\n"
    f"open('dist/{LONG}', 'w').write('long')\n"
    "open('dist/caf\\u00e9.txt', 'w').write('accent')\n"
    '" && chmod 755 dist/big.bin && chmod 600 dist/empty && chmod 444 dist/block && '
    "ln -s big.bin dist/latest && ln dist/block dist/hard && echo built"
)


def project(tasks: dict[str, Any]) -> dict[str, Any]:
    return {"project": {"name": "app"}, "tool": {"vx": {"tasks": tasks}}}


def workspace(make: Make, cmd: str = BUILD) -> VxWorkspace:
    return make(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
            "packages/app/pyproject.toml": project({"build": {"cmd": cmd, "outputs": ["dist/**"]}}),
            "packages/app/src/main.txt": "source\n",
        }
    )


def stored(ws: VxWorkspace) -> Path:
    (path,) = (ws.path / ".vx" / "cache" / "artifacts").glob("*/*.tar.zst")
    return path


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("vx: warning:")]


def test_trees_round_trip_byte_and_mode_identical(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    first = ws.run("run", "build")
    assert first.outcomes == {"app#build": "success"}, first.output
    dist = ws.path / "packages/app/dist"
    built = snapshot(dist)
    mtimes = {name: os.lstat(dist / name).st_mtime_ns for name in built}
    assert len(built) > 1500
    assert built[LONG][2] == b"long"

    shutil.rmtree(dist)
    again = ws.run("run", "build")
    assert again.outcomes == {"app#build": "cached"}, again.output
    assert snapshot(dist) == built
    files = [name for name, entry in built.items() if entry[0] == "file"]
    assert {name: os.lstat(dist / name).st_mtime_ns for name in files} == {
        name: mtimes[name] for name in files
    }
    assert os.stat(dist / "hard").st_ino == os.stat(dist / "block").st_ino
    assert not list((ws.path / ".vx" / "tmp").glob("*"))


def test_archive_is_a_plain_tar_with_meta_first_and_digests_last(vx_workspace: Make) -> None:
    ws = workspace(vx_workspace)
    assert ws.run("run", "build").exit_code == 0
    data = stored(ws).read_bytes()
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    listed = subprocess.run(
        ["tar", "-tf", "-"], input=plain, capture_output=True, check=True
    ).stdout.decode()
    names = listed.splitlines()
    assert names[:2] == [META_NAME, LOG_NAME]
    assert names[-1] == DIGESTS_NAME
    assert f"packages/app/dist/{LONG}" in names
    assert "packages/app/dist/café.txt" in names
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = {member.name: member for member in tar}
        digests = json.loads(tar.extractfile(members[DIGESTS_NAME]).read())  # type: ignore[union-attr]
        big = tar.extractfile(members["packages/app/dist/big.bin"]).read()  # type: ignore[union-attr]
    assert members["packages/app/dist/latest"].issym()
    assert members["packages/app/dist/hard"].islnk()
    assert members["packages/app/dist/big.bin"].mode == 0o755
    assert big == (ws.path / "packages/app/dist/big.bin").read_bytes()
    meta = read_meta(data)
    # The head listing comes from lstat alone; every regular file's digest is in the trailer.
    files = {name for name, entry in meta["outputs"].items() if entry["type"] == "file"}
    assert files == set(digests)
    assert all("digest" not in meta["outputs"][name] for name in files)
    import blake3

    assert digests["packages/app/dist/big.bin"] == blake3.blake3(big).hexdigest()


def test_entries_of_another_cache_format_are_misses(
    vx_workspace: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(vx_workspace, "mkdir -p dist && cat src/main.txt > dist/out.txt && echo built")
    with monkeypatch.context() as patch:
        # What an earlier vx wrote: every key and archive carries the format.
        patch.setattr("vx.keys.CACHE_FORMAT", 2)
        patch.setattr("vx.artifacts.CACHE_FORMAT", 2)
        old = ws.run("run", "build")
        assert old.outcomes == {"app#build": "success"}, old.output
        assert ws.run("run", "build").outcomes == {"app#build": "cached"}
    current = ws.run("run", "build")
    assert current.outcomes == {"app#build": "success"}, current.output
    assert warnings(current.stderr) == []
    assert ws.run("run", "build").outcomes == {"app#build": "cached"}
    # Both versions' entries are kept side by side, under different keys.
    artifacts = (ws.path / ".vx/cache/artifacts").glob("*/*.tar.zst")
    assert sorted(_format_of(path.read_bytes()) for path in artifacts) == [2, 3]


def _format_of(data: bytes) -> int:
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        member = tar.next()
        assert member is not None
        assert member.name == META_NAME
        meta: dict[str, Any] = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    return int(meta["format"])


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_archive_is_a_miss_that_leaves_no_partial_outputs(
    vx_workspace: Make, keep: float
) -> None:
    # The command records what dist held when it started (after the refused restore).
    ws = workspace(vx_workspace, f"ls -A dist > ../seen.txt 2>/dev/null; {BUILD}")
    assert ws.run("run", "build").exit_code == 0
    path = stored(ws)
    data = path.read_bytes()
    key = read_meta(data)["key"]
    store = LocalCache(ws.path / ".vx" / "cache")
    store.delete(key)
    store.put(key, Artifact(key=key, data=data[: int(len(data) * keep)], task_id="app#build"))
    store.close()
    shutil.rmtree(ws.path / "packages/app/dist")
    (ws.path / "packages/seen.txt").unlink()

    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"app#build": "success"}, result.output
    (warning,) = warnings(result.stderr)
    assert "unusable" in warning
    assert key[:16] in warning
    assert (ws.path / "packages/seen.txt").read_text() == ""
    assert not list((ws.path / ".vx" / "tmp").glob("*"))
    shutil.rmtree(ws.path / "packages/app/dist")
    assert ws.run("run", "build").outcomes == {"app#build": "cached"}


def test_an_output_directory_linked_out_of_the_project_is_refused(
    vx_workspace: Make, tmp_path: Path
) -> None:
    """``dist`` replaced by a link to a directory outside the project: the restore refuses
    it (one warning; the entry is evicted and the task runs) and writes nothing there. A
    link that stays inside the project is followed."""
    cmd = "test -e ../skip || (mkdir -p dist/sub && echo one > dist/sub/a.txt)"
    ws = workspace(vx_workspace, cmd)
    (ws.path / "packages/app/.gitignore").write_text("dist\n")  # the link is no input
    assert ws.run("run", "build").outcomes == {"app#build": "success"}
    outside = tmp_path / "outside"
    outside.mkdir()
    dist = ws.path / "packages/app/dist"
    shutil.rmtree(dist)
    dist.symlink_to(outside)
    (ws.path / "packages/skip").write_text("")

    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"app#build": "success"}, result.output
    (warning,) = warnings(result.stderr)
    assert "its directory leads outside the project" in warning
    assert not list(outside.iterdir())
    assert not [p for p in (ws.path / ".vx" / "tmp").iterdir() if p.name != "CACHEDIR.TAG"]

    (ws.path / "packages/skip").unlink()
    dist.unlink()
    assert ws.run("run", "build", "--force").outcomes == {"app#build": "success"}
    inside = ws.path / "packages/app/elsewhere"
    shutil.move(dist, inside)
    shutil.rmtree(inside / "sub")
    dist.symlink_to("elsewhere")
    restored = ws.run("run", "build")
    assert restored.outcomes == {"app#build": "cached"}, restored.output
    assert (inside / "sub/a.txt").read_text() == "one\n"


def _without_listing(ws: VxWorkspace) -> None:
    """Keep the entry but not its listing in the index (as a remote hit, or an entry with a
    tool-reported fingerprint): the next hit reads the archive itself."""
    path = stored(ws)
    data = path.read_bytes()
    key = read_meta(data)["key"]
    store = LocalCache(ws.path / ".vx" / "cache")
    store.delete(key)
    store.put(key, Artifact(key=key, data=data, task_id="app#build"))
    store.close()


def test_outputs_in_place_with_other_mtimes_are_compared_by_digest(vx_workspace: Make) -> None:
    """The archive's head lists no digests (they come last): outputs whose content is
    current but whose mtimes changed are recognised from the trailing digests and left in
    place; the same sizes with other content are restored."""
    cmd = "mkdir -p dist/sub && echo one > dist/a.txt && echo two > dist/sub/b.txt"
    ws = workspace(vx_workspace, cmd)
    assert ws.run("run", "build").outcomes == {"app#build": "success"}
    _without_listing(ws)
    a, b = ws.path / "packages/app/dist/a.txt", ws.path / "packages/app/dist/sub/b.txt"
    os.utime(a, ns=(10**18, 10**18))
    inode = os.stat(a).st_ino

    same = ws.run("run", "build")
    assert same.outcomes == {"app#build": "cached"}, same.output
    assert same.summary is not None
    (cache,) = [task["cache"] for task in same.summary["tasks"]]
    assert cache["restored_outputs"] is False
    assert os.stat(a).st_ino == inode
    assert os.stat(a).st_mtime_ns == 10**18

    _without_listing(ws)
    b.write_text("TWO\n")  # same size, other content, another mtime
    other = ws.run("run", "build")
    assert other.outcomes == {"app#build": "cached"}, other.output
    assert other.summary is not None
    (cache,) = [task["cache"] for task in other.summary["tasks"]]
    assert cache["restored_outputs"] is True
    assert b.read_text() == "two\n"
    assert a.read_text() == "one\n"
    assert not list((ws.path / ".vx" / "tmp").glob("*"))
