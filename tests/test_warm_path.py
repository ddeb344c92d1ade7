"""The start-up caches: a warm run stays correct when anything they depend on changes, and
does not import what it does not need (measured by imports, never by time)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vx.testing import VxWorkspace

Make = Callable[..., VxWorkspace]

FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
    "packages/core/pyproject.toml": (
        '[project]\nname = "core"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && cp src/a.py dist/a.py"\noutputs = ["dist/**"]\n'
    ),
    "packages/core/src/a.py": "A = 1\n",
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["core"]\n\n[tool.vx.tasks.build]\n'
        'cmd = "true"\ndepends_on = ["^build"]\n'
    ),
}


def _imported(ws: VxWorkspace, *args: str) -> tuple[set[str], str]:
    """Modules a ``vx`` subprocess imported (from ``-X importtime``), and its stdout."""
    import subprocess

    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vx", *args],
        cwd=ws.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    modules = {
        line.rpartition("|")[2].strip()
        for line in completed.stderr.splitlines()
        if line.startswith("import time:")
    }
    return modules, completed.stdout


def test_a_warm_full_hit_imports_no_heavy_module(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    cold, _ = _imported(ws, "run", "build", "--force")
    assert "asyncio" in cold  # --force runs the tasks: the scheduler is needed
    assert "distributed" not in cold  # local execution never imports Dask
    warm, out = _imported(ws, "run", "build")
    assert "2 cached, 2 total" in out
    heavy_modules = (
        *("pydantic", "pydantic_settings", "asyncio", "tomllib", "pathspec", "tarfile"),
        # The local cache reads small logs as stored: no compression library, no `secrets`.
        *("zstandard", "secrets"),
    )
    for heavy in (*heavy_modules, "rich", "distributed", "dask"):
        assert heavy not in warm, f"a warm full hit imported {heavy}"
    # History: the run is recorded, but the scheduler is never asked for priorities.
    assert "vx_history.recorder" in warm
    assert "vx_history.scheduling" not in warm
    # Records: the event log is kept (and stored with the run); replay and report are not
    # loaded.
    assert "vx_records.events" in warm
    assert "vx_records.replay" not in warm
    assert "vx_records.report" not in warm
    # vx init and vx mcp: their hooks modules load (always), their dependencies must not.
    for heavy in ("tomlkit", "mcp", "anyio", "vx_init.propose", "vx_mcp.server", "vx.ipc"):
        assert heavy not in warm, f"a warm full hit imported {heavy}"
    # Without a warm server (the suite runs with VX_DAEMON=0): only the decision whether to
    # start one is made at the end of the run; its server and socket code stay unloaded.
    for module in ("vx.daemon.server", "socket", "vx.daemon.filestate", "watchfiles"):
        assert module not in warm, f"a warm full hit imported {module}"
    for module in ("vx.daemon.filestate", "watchfiles"):
        assert module not in cold, f"a run that executes tasks imported {module}"


def test_the_watch_plugin_imports_nothing_for_vx_run(vx_workspace: Make) -> None:
    """Read from ``sys.modules`` of the process itself (complete, unlike an import log)."""
    import subprocess

    ws = vx_workspace(FILES)
    code = (
        "import json, sys; from vx.cli import main; code = main(['run', 'build']); "
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ws.path, capture_output=True, text=True, check=False
    )
    code, modules = json.loads(completed.stdout.splitlines()[-1])
    assert code == 0, completed.stdout
    assert "vx_watch.hooks" in modules  # the plugin is loaded ...
    for unused in ("watchfiles", "anyio", "vx_watch.watcher", "vx_watch.session", "vx.services"):
        assert unused not in modules, f"vx run imported {unused}"  # ... and imports nothing


def test_no_opentelemetry_module_is_imported_unless_export_is_enabled(
    vx_workspace: Make,
) -> None:
    """Importing the SDK and an exporter costs ~150 ms: only an enabled export pays it."""
    ws = vx_workspace(FILES)

    def otel(modules: set[str]) -> set[str]:
        return {
            m
            for m in modules
            if m.startswith(("opentelemetry", "grpc", "google.protobuf", "vx_otel.tracing"))
        }

    assert ws.run_subprocess("run", "build").exit_code == 0
    for args in (("run", "build", "--force"), ("run", "build"), ("--version",)):
        modules, _ = _imported(ws, *args)
        assert "vx_otel.options" not in modules
        assert otel(modules) == set(), f"vx {' '.join(args)} imported {sorted(otel(modules))}"
    # The same check sees the import when export is on (here to a port nothing listens on).
    os.environ["VX_OTEL__FLUSH_TIMEOUT"] = "0"
    try:
        enabled, _ = _imported(ws, "run", "build", "--otel")
    finally:
        del os.environ["VX_OTEL__FLUSH_TIMEOUT"]
    assert "opentelemetry.sdk.trace" in enabled
    assert "grpc" not in enabled  # the gRPC exporter only for protocol = "grpc"


def test_an_unreadable_workspace_cache_is_rebuilt(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run("run", "build", "--dry=json").exit_code == 0
    pickle_path = ws.path / ".vx" / "workspace.pickle"
    assert pickle_path.is_file()
    pickle_path.write_bytes(b"\x80\x05not a pickle at all")
    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"core#build": "success", "app#build": "success"}
    assert pickle_path.read_bytes().startswith(b"\x80")  # rewritten
    assert ws.run("run", "build").outcomes == {"core#build": "cached", "app#build": "cached"}


def test_a_copied_checkout_never_uses_the_originals_workspace(
    vx_workspace: Make, tmp_path: Path
) -> None:
    """A copy made with its .vx (cp -r, a CI cache restored elsewhere) runs in the copy."""
    import shutil

    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(ws.path, copy, symlinks=True)
    shutil.rmtree(ws.path / "packages/core/dist")
    (copy / "packages/core/src/a.py").write_text("A = 2\n")
    result = VxWorkspace(copy).run_subprocess("run", "build")
    assert result.exit_code == 0, result.output
    assert (copy / "packages/core/dist/a.py").read_text() == "A = 2\n"
    assert not (ws.path / "packages/core/dist").exists()  # the original was not touched


def test_variables_that_configure_nothing_keep_the_workspace_cache(
    vx_workspace: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The benchmarks and users switch the warm server per run (VX_DAEMON=0), and a vx run
    # inside a task gets its own VX_IPC: neither may cost a revalidation (pydantic).
    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    monkeypatch.setenv("VX_DAEMON", "off")
    monkeypatch.setenv("VX_IPC", "/tmp/vx-ipc-of-some-task.sock")
    warm, out = _imported(ws, "run", "build")
    assert "2 cached, 2 total" in out
    assert "pydantic" not in warm
    monkeypatch.setenv("VX_CONCURRENCY", "3")  # a setting: validated again
    warm, _ = _imported(ws, "run", "build")
    assert "pydantic" in warm
    # A value that does not validate is never taken from the cache.
    result = ws.run_subprocess("run", "build", env={"VX_DAEMON": "maybe"})
    assert result.exit_code == 78, result.output
    assert "VX_DAEMON" in result.stderr


def test_an_edited_root_pyproject_is_read_again(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    ws.write({"pyproject.toml": FILES["pyproject.toml"] + 'required_plugins = ["vx-absent>=1"]\n'})
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 78, result.output
    assert "vx-absent" in result.stderr


def test_a_distribution_installed_between_runs_is_discovered(
    vx_workspace: Make, tmp_path: Path, user_cache: Path
) -> None:
    ws = vx_workspace(FILES)
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    before = ws.run_subprocess("plugins", "--json", env=env)
    assert "late" not in {p["name"] for p in json.loads(before.stdout)["plugins"]}
    assert any(user_cache.glob("entry-points-*.json")), "the entry points were not cached"
    (site / "vx_late_plugin.py").write_text(
        "import vx\n\n@vx.hookimpl\ndef vx_configure(config):\n    pass\n"
    )
    dist_info = site / "vx_late-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: vx-late\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[vx]\nlate = vx_late_plugin\n")
    after = ws.run_subprocess("plugins", "--json", env=env)
    plugins = {p["name"]: p for p in json.loads(after.stdout)["plugins"]}
    assert plugins["late"]["distribution"] == "vx-late"


def test_a_workspace_cache_written_for_another_data_layout_is_not_loaded(
    vx_workspace: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache key includes the fields of the pickled classes: after an upgrade that changes
    them, an old pickle would load into the wrong fields."""
    import vx.workspace_cache

    ws = vx_workspace(FILES)
    assert ws.run("run", "build", "--dry=json").exit_code == 0
    pickle_path = ws.path / ".vx" / "workspace.pickle"
    written = pickle_path.read_bytes()
    assert ws.run("run", "build", "--dry=json").exit_code == 0
    assert pickle_path.read_bytes() == written  # valid: loaded, not rewritten
    monkeypatch.setattr(vx.workspace_cache, "_layout", lambda: (("another", "layout"),))
    result = ws.run("run", "build", "--dry=json")
    assert result.exit_code == 0, result.output
    assert pickle_path.read_bytes() != written  # ignored and written again for this layout


def test_a_warm_full_hit_with_the_sandbox_enabled_stays_lean(vx_workspace: Make) -> None:
    """Plugin-owned task keys (``sandbox = {...}``) come back from the workspace cache as
    plain views: no pydantic, no sandbox settings models, no glob library on a full hit."""
    files = dict(FILES)
    files["pyproject.toml"] += '\n[tool.vx.sandbox]\nmode = "required"\n'
    files["packages/app/pyproject.toml"] += 'sandbox = { network = "loopback" }\n'
    ws = vx_workspace(files)
    assert ws.run_subprocess("run", "build").exit_code == 0
    warm, out = _imported(ws, "run", "build")
    assert "2 cached, 2 total" in out
    for heavy in ("pydantic", "vx_sandbox.settings", "pathspec", "asyncio", "tomllib"):
        assert heavy not in warm, f"a warm full hit imported {heavy}"


def test_a_served_full_hit_imports_only_the_thin_client(
    vx_workspace: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the warm server running, the ``vx`` process imports the thin client and nothing
    of the kernel, the plugins or their libraries (not even ``typing`` or ``json``)."""
    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    assert ws.run_subprocess("daemon", "start").exit_code == 0
    try:
        monkeypatch.setenv("VX_DAEMON", "1")
        served, out = _imported(ws, "run", "build")
        assert "2 cached, 2 total" in out
        status = ws.run_subprocess("daemon", "status", "--json").stdout
        assert json.loads(status)["served"] == 1
    finally:
        ws.run_subprocess("daemon", "stop")
    assert "vx.daemon.client" in served
    for heavy in ("vx.cli", "vx.config", "pluggy", "blake3", "typing", "json", "socket", "re"):
        assert heavy not in served, f"a served full hit imported {heavy}"
    # The file watcher lives in the server only.
    for watcher in ("watchfiles", "vx.daemon.filestate", "vx.daemon.server"):
        assert watcher not in served, f"a served full hit's client imported {watcher}"
