"""The ``otel`` plugin (``vx_otel``), end to end.

Integration tests send runs to a real Arize Phoenix (see ``otlp_servers.py``) over OTLP
http/protobuf and gRPC and read the spans back from its REST API: names, parent/child
structure, CI/CD semantic-convention attributes, a failed task's error status, and the span
that an instrumented task emitted under its task span through ``TRACEPARENT``.

Fast tests use an in-process OTLP/HTTP receiver: what is exported (resource, links, events,
headers), that export is off by default, that ``TRACEPARENT`` never enters a key or ``vx why``,
that a collector which is down, slow, failing or rejecting the token changes nothing but one
warning naming the endpoint, and that bad configuration stops the run before any task.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("otlp_servers", "remote_servers")
from otlp_servers import FakeCollector, Phoenix, closed_port_url  # noqa: E402
from remote_servers import FakeRemote  # noqa: E402
from servers import Child, vx_argv  # noqa: E402

from vx.testing import RunResult, VxWorkspace  # noqa: E402

pytest_plugins = ["otlp_servers", "remote_servers"]

Make = Callable[[dict[str, Any]], VxWorkspace]

#: A task that is itself instrumented: it continues the trace vx hands it in TRACEPARENT.
CHILD = textwrap.dedent(
    """\
    import os
    import sys

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    endpoint, project = sys.argv[1], sys.argv[2]
    carrier = {"traceparent": os.environ["TRACEPARENT"]}
    if "TRACESTATE" in os.environ:
        carrier["tracestate"] = os.environ["TRACESTATE"]
    parent = TraceContextTextMapPropagator().extract(carrier)
    provider = TracerProvider(resource=Resource({"openinference.project.name": project}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    with provider.get_tracer("child").start_as_current_span("pytest session", context=parent):
        print("instrumented tool ran")
    provider.shutdown()
    """
)


def _files(collector_url: str, project: str, *, failing: bool = False) -> dict[str, Any]:
    """core#build -> app#build -> app#test (app#test fails when ``failing``); core#build is
    instrumented and sends its own span to ``collector_url``."""
    child = f"{sys.executable} child.py {collector_url}/v1/traces {project}"
    return {
        "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
        "packages/core/child.py": CHILD,
        "packages/core/pyproject.toml": (
            '[project]\nname = "core"\n\n[tool.vx.tasks.build]\n'
            f'cmd = "{child} && mkdir -p dist && echo built > dist/out.txt"\n'
            'outputs = ["dist/**"]\n'
        ),
        "packages/app/pyproject.toml": (
            '[project]\nname = "app"\ndependencies = ["core"]\n\n[tool.vx.tasks.build]\n'
            'cmd = "echo app built"\ndepends_on = ["^build"]\n\n[tool.vx.tasks.test]\n'
            f'cmd = "echo running tests; echo FAILED test_x; exit {3 if failing else 0}"\n'
            'depends_on = ["build"]\n'
        ),
    }


def _export_env(url: str, project: str, **extra: str) -> dict[str, str]:
    return {
        "VX_OTEL__ENABLED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        **extra,
    }


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in ("TRACEPARENT", "TRACESTATE"):
            monkeypatch.delenv(name)


def _warnings(result: RunResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning:" in line]


def _by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans}


# -- off by default ---------------------------------------------------------------------


def test_export_is_off_by_default(vx_workspace: Make, collector: FakeCollector) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.show]\n'
                'cmd = "echo traceparent=[$TRACEPARENT]"\ncache = false\n'
            ),
        }
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    result = ws.run("run", "show", env=env)
    assert result.exit_code == 0, result.output
    assert "traceparent=[]" in result.stdout
    assert collector.requests == 0
    disabled = ws.run("run", "show", "--otel", env={**env, "OTEL_SDK_DISABLED": "true"})
    assert disabled.exit_code == 0, disabled.output
    assert "traceparent=[]" in disabled.stdout
    assert collector.requests == 0


# -- what is exported ---------------------------------------------------------------------


def test_a_run_is_one_trace_with_semantic_convention_attributes(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(_files(collector.url, "fake", failing=True))
    secret = f"token-{uuid.uuid4().hex}"
    ws.write(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["packages/*"]\n\n[tool.vx.otel]\n'
                f'headers = {{ x-api-key = "{secret}" }}\nservice_name = "acme-ci"\n'
            )
        }
    )
    result = ws.run(
        "run", "build", "test", "--otel", env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    )
    assert result.exit_code == 3, result.output
    assert secret not in result.output
    assert _warnings(result) == []
    vx_exports = [e for e in collector.exports if e.resource.get("service.name") == "acme-ci"]
    assert vx_exports
    assert all(e.headers.get("x-api-key") == secret for e in vx_exports)
    resource = vx_exports[0].resource
    assert resource["service.version"]
    assert resource["process.pid"] > 0
    assert resource["host.name"]
    spans = _by_name(collector.spans)  # vx's spans and the instrumented task's
    run = spans["RUN vx run build test"]
    assert run["parent_id"] is None
    assert run["kind"] == 2  # SERVER
    assert run["status"] == 2  # ERROR
    attributes = run["attributes"]
    assert attributes["cicd.pipeline.name"] == "vx run build test"
    assert attributes["cicd.pipeline.run.id"] == result.summary["run_id"]  # type: ignore[index]
    assert attributes["cicd.pipeline.result"] == "failure"
    assert attributes["vx.tasks.failed"] == 1
    assert attributes["vx.tasks.success"] == 2
    assert attributes["vx.tasks.total"] == 3
    assert attributes["vx.concurrency"] >= 1
    assert {"core#build", "app#build", "app#test"} <= spans.keys()
    for id in ("core#build", "app#build", "app#test"):
        span = spans[id]
        assert span["trace_id"] == run["trace_id"]
        assert span["parent_id"] == run["span_id"]
        assert span["attributes"]["cicd.pipeline.task.name"] == id
        assert span["attributes"]["cicd.pipeline.task.run.id"].endswith(id)
        assert span["attributes"]["vx.task.key"] == result.task(id)["hash"]
        assert span["attributes"]["vx.cache.status"] == "miss"
        assert "vx.task.command" not in span["attributes"]  # only when export_commands
        assert "vx.cache.lookup" in [name for name, _ in span["events"]]
    assert spans["core#build"]["attributes"]["cicd.pipeline.task.type"] == "build"
    assert spans["app#build"]["links"] == [spans["core#build"]["span_id"]]
    assert "vx.cache.save" in [name for name, _ in spans["core#build"]["events"]]
    failed = spans["app#test"]
    assert failed["status"] == 2
    assert failed["status_message"] == "exit code 3"
    assert failed["attributes"]["cicd.pipeline.task.run.result"] == "failure"
    assert failed["attributes"]["process.exit.code"] == 3
    log = dict(failed["events"])["vx.task.log"]["vx.log.tail"]
    assert "FAILED test_x" in log
    # The instrumented task's own span continues the trace under its task span.
    child = spans["pytest session"]
    assert child["trace_id"] == run["trace_id"]
    assert child["parent_id"] == spans["core#build"]["span_id"]


def test_cache_hits_and_skipped_tasks_are_spans_too(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(_files(collector.url, "fake", failing=False))
    env = _export_env(collector.url, "fake")
    assert ws.run("run", "build", env=env).exit_code == 0
    collector.exports.clear()
    result = ws.run("run", "build", env=env)
    assert set(result.outcomes.values()) == {"cached"}
    spans = _by_name(collector.spans)
    run = spans["RUN vx run build"]["attributes"]
    assert run["vx.cache.hits"] == 2
    assert run["cicd.pipeline.result"] == "success"
    hit = spans["core#build"]["attributes"]
    assert hit["vx.cache.status"] == "hit"
    assert hit["vx.cache.source"] == "local"
    assert hit["cicd.pipeline.task.run.result"] == "success"
    assert "pytest session" not in spans  # a hit runs nothing

    core = '[project]\nname = "core"\n\n[tool.vx.tasks.build]\ncmd = "exit 4"\n'
    ws.write({"packages/core/pyproject.toml": core})
    collector.exports.clear()
    failed = ws.run("run", "build", env=env)
    assert failed.exit_code == 4
    spans = _by_name(collector.spans)
    assert spans["app#build"]["attributes"]["cicd.pipeline.task.run.result"] == "skip"
    assert spans["app#build"]["parent_id"] == spans["RUN vx run build"]["span_id"]


def test_a_stored_run_replayed_into_otel_keeps_its_recorded_times(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    """A run made with export off is exported after the fact by ``vx replay --otel``."""
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n',
            "p/a/pyproject.toml": (
                '[project]\nname = "a"\n[tool.vx.tasks.build]\n'
                'cmd = "mkdir -p dist && echo a > dist/a"\noutputs = ["dist/**"]\n'
            ),
            "p/b/pyproject.toml": (
                '[project]\nname = "b"\ndependencies = ["a"]\n[tool.vx.tasks.build]\n'
                'cmd = "echo broken; exit 3"\ndepends_on = ["^build"]\n'
            ),
            "p/c/pyproject.toml": (
                '[project]\nname = "c"\ndependencies = ["b"]\n[tool.vx.tasks.build]\n'
                'cmd = "echo c"\ndepends_on = ["^build"]\n'
            ),
        }
    )
    ws.run("run", "build")
    made = ws.run("run", "build", "--events=events.ndjson")  # export off: nothing sent
    assert made.outcomes == {"a#build": "cached", "b#build": "failed", "c#build": "skipped"}
    assert collector.requests == 0
    events = [json.loads(line) for line in (ws.path / "events.ndjson").read_text().splitlines()]
    started = events[0]["started_at"]
    finished = {e["task"]: e for e in events if e["event"] == "task_finish"}
    run_ms = events[-1]["duration_ms"]
    run_id = made.summary["run_id"]  # type: ignore[index]

    # enabled = true alone does not make a replay export (it would duplicate the trace)
    enabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "VX_OTEL__ENABLED": "1"}
    assert ws.run("replay", run_id, env=enabled).exit_code == 0
    assert collector.requests == 0

    replayed = ws.run("replay", run_id, "--otel", env=enabled)
    assert replayed.exit_code == 0, replayed.output
    assert _warnings(replayed) == []
    spans = _by_name(collector.spans)
    assert set(spans) == {"RUN vx run build", "a#build", "b#build", "c#build"}
    run = spans["RUN vx run build"]
    assert run["attributes"]["vx.replay"] is True
    assert run["attributes"]["cicd.pipeline.run.id"] == run_id
    assert run["attributes"]["cicd.pipeline.result"] == "failure"
    start_ns = int(started * 1e9)
    assert abs(run["start"] - start_ns) < 2_000  # the recorded times, not the replay's
    assert abs(run["end"] - (start_ns + int(run_ms * 1e6))) < 2_000
    for id in ("a#build", "b#build"):
        span, recorded = spans[id], finished[id]
        assert span["trace_id"] == run["trace_id"]
        assert span["parent_id"] == run["span_id"]
        begin = start_ns + int(recorded["start_ms"] * 1e6)
        assert abs(span["start"] - begin) < 2_000, (id, span, recorded)
        assert abs(span["end"] - (begin + int(recorded["duration_ms"] * 1e6))) < 2_000
    hit = spans["a#build"]
    assert hit["attributes"]["vx.cache.status"] == "hit"
    assert hit["attributes"]["vx.cache.source"] == "local"
    assert "vx.cache.lookup" in [name for name, _ in hit["events"]]
    failed = spans["b#build"]
    assert failed["status"] == 2
    assert failed["attributes"]["process.exit.code"] == 3
    assert failed["links"] == [hit["span_id"]]
    assert "broken" in dict(failed["events"])["vx.task.log"]["vx.log.tail"]
    skipped = spans["c#build"]
    assert skipped["attributes"]["cicd.pipeline.task.run.result"] == "skip"
    assert skipped["start"] == skipped["end"] <= run["end"]

    collector.exports.clear()
    to = ws.run(
        "replay", run_id, "--to", "otel", env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    )
    assert to.exit_code == 0, to.output
    assert to.stdout == ""  # only the exporter received the events
    assert len(collector.spans) == 4
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SDK_DISABLED": "true"}
    refused = ws.run("replay", run_id, "--otel", env=off)
    assert refused.exit_code == 2
    assert "vx replay --otel: export is off (OTEL_SDK_DISABLED=true)" in refused.stderr
    assert len(collector.spans) == 4


def test_each_run_of_vx_watch_is_its_own_trace(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": '[project]\nname = "p"\n[tool.vx.tasks.build]\ncmd = "cat a.txt"\n',
            "p/a.txt": "one\n",
        }
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    watch = Child(vx_argv("watch", "build", "--otel", "--debounce", "200ms"), ws.path, env)
    try:
        watch.wait_for("vx watch: waiting for changes")
        (ws.path / "p" / "a.txt").write_text("two\n")
        watch.wait_for("p#build: two")
        watch.wait_for("vx watch: waiting for changes")
    finally:
        watch.process.terminate()
        watch.process.wait(30)
    runs = [span for span in collector.spans if span["name"] == "RUN vx run build"]
    assert len(runs) == 2, collector.spans
    assert runs[0]["trace_id"] != runs[1]["trace_id"]
    builds = [span for span in collector.spans if span["name"] == "p#build"]
    assert sorted(span["trace_id"] for span in builds) == sorted(r["trace_id"] for r in runs)
    assert "warning:" not in watch.output


def test_export_keeps_what_other_wrappers_give_the_task(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    """otel adds TRACEPARENT to the command spec; the sandbox (and the runner-aware
    channel it must let through) still apply to the same spec."""
    import shutil

    tool = (
        "import os, vx_ipc\n"
        "print('traceparent', bool(os.environ.get('TRACEPARENT')))\n"
        "print('reported', vx_ipc.add_inputs(['data.txt']))\n"
    )
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["p"]\n[tool.vx.sandbox]\nmode = "required"\n'
                'backend = "bwrap"\n'
            ),
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.check]\n'
                f'cmd = "{sys.executable} tool.py"\ninputs = ["tool.py", "vx_ipc.py"]\n'
            ),
            "p/tool.py": tool,
            "p/data.txt": "one\n",
        }
    )
    shutil.copy(Path(__file__).resolve().parent.parent / "vx_ipc.py", ws.path / "p")
    result = ws.run("run", "check", "--otel", env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    assert result.exit_code == 0, result.output
    assert "p#check: traceparent True" in result.stdout
    assert "p#check: reported True" in result.stdout, result.output
    assert "p#check" in _by_name(collector.spans)


def test_remote_cache_uploads_are_child_spans_of_their_task(
    vx_workspace: Make, collector: FakeCollector, fake_remote: FakeRemote
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["p"]\n[tool.vx.remote]\n'
                f'url = "{fake_remote.url}"\nteam = "acme"\n'
            ),
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.build]\n'
                'cmd = "mkdir -p dist && echo x > dist/x"\noutputs = ["dist/**"]\n'
            ),
        }
    )
    env = _export_env(collector.url, "upload", VX_REMOTE_CACHE_TOKEN=fake_remote.token)
    result = ws.run("run", "build", env=env)
    assert result.exit_code == 0, result.output
    assert fake_remote.count("PUT") == 1
    spans = _by_name(collector.spans)
    upload = spans["vx.cache.upload remote"]
    assert upload["parent_id"] == spans["p#build"]["span_id"]
    assert upload["attributes"]["vx.cache.layer"] == "remote"
    assert upload["attributes"]["vx.task.key"] == result.task("p#build")["hash"]
    assert upload["status"] == 0  # UNSET: it worked


def test_traceparent_never_enters_keys_dry_runs_or_why(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\nenv_mode = "loose"\n',
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.build]\n'
                'cmd = "mkdir -p dist && env > dist/env.txt"\n'
                'outputs = ["dist/**"]\nenv = ["TRACE*"]\n'
            ),
        }
    )
    env = _export_env(collector.url, "keys")
    first = ws.run("run", "build", env=env)
    assert first.outcomes == {"p#build": "success"}
    task_env = dict(
        line.partition("=")[::2] for line in (ws.path / "p/dist/env.txt").read_text().splitlines()
    )
    traceparent = task_env["TRACEPARENT"]
    run_span = _by_name(collector.spans)["RUN vx run build"]
    assert traceparent.startswith(f"00-{run_span['trace_id']}-")
    # A second exported run (a new trace id) and a run without export are full hits.
    assert ws.run("run", "build", env=env).outcomes == {"p#build": "cached"}
    assert ws.run("run", "build").outcomes == {"p#build": "cached"}
    for args in (("why", "p#build"), ("why", "p#build", "--json"), ("run", "build", "--dry")):
        shown = ws.run(*args, env=env)
        assert shown.exit_code == 0, shown.output
        assert "TRACEPARENT" not in shown.output
        assert traceparent not in shown.output
    dry = json.loads(ws.run("run", "build", "--dry=json", env=env).stdout)
    assert dry["tasks"][0]["cache"]["status"] == "hit"
    assert "TRACEPARENT" not in json.dumps(dry)
    assert traceparent not in json.dumps(dry)


def test_git_checkouts_are_described_by_vcs_resource_attributes(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    import subprocess

    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": '[project]\nname = "p"\n[tool.vx.tasks.t]\ncmd = "true"\n',
        }
    )
    for args in (
        ["init", "-q", "-b", "feature/x"],
        ["remote", "add", "origin", "https://ci:hunter2@git.example.com/acme/mono.git"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "c"],
    ):
        subprocess.run(["git", *args], cwd=ws.path, check=True, capture_output=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ws.path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert ws.run("run", "t", env=_export_env(collector.url, "git")).exit_code == 0
    resource = collector.exports[0].resource
    assert resource["vcs.ref.head.revision"] == head
    assert resource["vcs.ref.head.name"] == "feature/x"
    assert resource["vcs.repository.url.full"] == "https://git.example.com/acme/mono.git"
    assert resource["vcs.repository.name"] == "mono"
    assert resource["service.name"] == "vx"
    assert resource["openinference.project.name"] == "git"  # OTEL_RESOURCE_ATTRIBUTES
    assert "hunter2" not in json.dumps(resource)


def test_vx_started_under_a_traceparent_nests_its_run(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": '[project]\nname = "p"\n[tool.vx.tasks.t]\ncmd = "true"\n',
        }
    )
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = _export_env(collector.url, "nested", TRACEPARENT=f"00-{trace_id}-{parent}-01")
    assert ws.run("run", "t", env=env).exit_code == 0
    run = _by_name(collector.spans)["RUN vx run t"]
    assert (run["trace_id"], run["parent_id"]) == (trace_id, parent)


def test_an_interrupted_run_is_exported_as_a_cancellation(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    import signal
    import time

    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.serve]\n'
                'cmd = "touch started; exec sleep 60"\ncache = false\n'
            ),
        }
    )
    process = ws.popen("run", "serve", env=_export_env(collector.url, "interrupt"))
    try:
        deadline = time.monotonic() + 60
        while not (ws.path / "p" / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    spans = _by_name(collector.spans)
    run = spans["RUN vx run serve"]
    assert run["attributes"]["cicd.pipeline.result"] == "cancellation"
    assert run["attributes"]["vx.interrupted"] is True
    assert spans["p#serve"]["attributes"]["cicd.pipeline.task.run.result"] == "cancellation"


def test_a_task_that_passes_on_a_retry_is_a_success_with_its_attempts(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n',
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.t]\n'
                'cmd = "test -e tried || { touch tried; exit 1; }"\nretries = 1\n'
            ),
        }
    )
    result = ws.run("run", "t", env=_export_env(collector.url, "flaky"))
    assert result.outcomes == {"p#t": "flaky"}, result.output
    spans = _by_name(collector.spans)
    task = spans["p#t"]["attributes"]
    assert task["cicd.pipeline.task.run.result"] == "success"
    assert task["vx.task.status"] == "flaky"
    assert task["vx.task.attempts"] == 2
    run = spans["RUN vx run t"]["attributes"]
    assert run["cicd.pipeline.result"] == "success"
    assert run["vx.tasks.flaky"] == 1


def test_commands_are_exported_only_when_configured(
    vx_workspace: Make, collector: FakeCollector
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["p"]\n[tool.vx.otel]\nexport_commands = true\n'
            ),
            "p/pyproject.toml": '[project]\nname = "p"\n[tool.vx.tasks.t]\ncmd = "echo hi"\n',
        }
    )
    assert ws.run("run", "t", env=_export_env(collector.url, "cmd")).exit_code == 0
    assert _by_name(collector.spans)["p#t"]["attributes"]["vx.task.command"] == "echo hi"


# -- never in the way ---------------------------------------------------------------------

_SIMPLE = {
    "pyproject.toml": '[tool.vx]\nmembers = ["p"]\n[tool.vx.otel]\nflush_timeout = 1\n',
    "p/pyproject.toml": (
        '[project]\nname = "p"\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && echo ok > dist/x"\noutputs = ["dist/**"]\n'
        '[tool.vx.tasks.bad]\ncmd = "exit 5"\n'
    ),
}


@pytest.fixture(params=["down", "500", "401", "slow"])
def broken_collector(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "down":
        yield closed_port_url()
        return
    fake = FakeCollector(mode=request.param, delay=60)
    yield fake.url
    fake.close()


def test_a_broken_collector_changes_nothing_but_one_warning(
    vx_workspace: Make, broken_collector: str
) -> None:
    ws = vx_workspace(_SIMPLE)
    token = f"secret-{uuid.uuid4().hex}"
    env = _export_env(
        broken_collector, "broken", OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{token}"
    )
    # The slow collector never answers: the run still ends (flush_timeout = 1 s); the
    # subprocess timeout only guards against a hang.
    ok = ws.run_subprocess("run", "build", env=env, timeout=60)
    assert ok.exit_code == 0, ok.output
    assert ok.outcomes == {"p#build": "success"}
    warnings = _warnings(ok)
    assert len(warnings) == 1, ok.stderr
    assert f"{broken_collector}/v1/traces" in warnings[0]
    assert "Traceback" not in ok.stderr
    assert token not in ok.output
    failed = ws.run_subprocess("run", "bad", env=env, timeout=60)
    assert failed.exit_code == 5
    assert failed.outcomes == {"p#bad": "failed"}
    assert len(_warnings(failed)) == 1, failed.stderr
    assert token not in failed.output


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_a_broken_grpc_collector_changes_nothing_but_one_warning(
    vx_workspace: Make, fault: str, request: pytest.FixtureRequest
) -> None:
    ws = vx_workspace(_SIMPLE)
    url = closed_port_url() if fault == "down" else request.getfixturevalue("silent_port_url")
    env = _export_env(url, fault, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    result = ws.run_subprocess("run", "build", env=env, timeout=60)
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"p#build": "success"}
    warnings = _warnings(result)
    assert len(warnings) == 1, result.stderr
    assert url in warnings[0]


@pytest.mark.parametrize(
    ("table", "env", "expected"),
    [
        ('protocol = "http/json"', {}, "tool.vx.otel.protocol"),
        ('endpoint = "localhost:4318"', {}, "tool.vx.otel.endpoint"),
        ('endpoint = "http://collector:99999"', {}, "tool.vx.otel.endpoint"),
        ('headers = { "bad header" = "SECRETVALUE" }', {}, "tool.vx.otel.headers"),
        ("", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("", {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            "",
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://:80/v1/traces"},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        ("", {"OTEL_EXPORTER_OTLP_HEADERS": "x-ok=1,SECRETVALUE"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ("", {"VX_OTEL__FLUSH_TIMEOUT": "-1"}, "VX_OTEL__FLUSH_TIMEOUT"),
    ],
)
def test_bad_configuration_is_an_error_before_any_task_runs(
    vx_workspace: Make, table: str, env: dict[str, str], expected: str
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                f'[tool.vx]\nmembers = ["p"]\n[tool.vx.otel]\nenabled = true\n{table}\n'
            ),
            "p/pyproject.toml": (
                '[project]\nname = "p"\n[tool.vx.tasks.t]\ncmd = "touch ran"\ncache = false\n'
            ),
        }
    )
    result = ws.run_subprocess("run", "t", env=env)
    assert result.exit_code == 78, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "SECRETVALUE" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (ws.path / "p" / "ran").exists()


def test_a_missing_extra_names_the_install_command(vx_workspace: Make, tmp_path: Path) -> None:
    """An environment without the SDK: a regular ``opentelemetry`` package shadows the
    installed namespace package, so ``opentelemetry.sdk`` cannot be imported."""
    shadow = tmp_path / "shadow"
    (shadow / "opentelemetry").mkdir(parents=True)
    (shadow / "opentelemetry" / "__init__.py").write_text("")
    ws = vx_workspace(_SIMPLE)
    env = {"PYTHONPATH": str(shadow), "OTEL_EXPORTER_OTLP_ENDPOINT": closed_port_url()}
    result = ws.run_subprocess("run", "build", "--otel", env=env)
    assert result.exit_code == 78, result.output
    assert "pip install 'vx-build[otel]'" in result.stderr
    assert "--otel" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (ws.path / "p" / "dist").exists()
    off = ws.run_subprocess("run", "build", env=env)
    assert off.exit_code == 0, off.output  # not enabled: not needed


# -- a real receiver: Phoenix ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_runs_read_back_from_phoenix(vx_workspace: Make, phoenix: Phoenix, protocol: str) -> None:
    project = f"vx-{protocol.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
    ws = vx_workspace(_files(phoenix.url, project, failing=True))
    endpoint = phoenix.url if protocol == "http/protobuf" else phoenix.grpc_url
    # What is read back matters here, not how fast: a loaded machine slows Phoenix's intake.
    env = _export_env(
        endpoint, project, OTEL_EXPORTER_OTLP_PROTOCOL=protocol, VX_OTEL__FLUSH_TIMEOUT="60"
    )
    result = ws.run_subprocess("run", "build", "test", env=env)
    assert result.exit_code == 3, result.output
    assert _warnings(result) == [], result.stderr
    assert "instrumented tool ran" in result.stdout

    spans = phoenix.wait_spans(project, 5)
    by_name = _by_name(spans)
    assert set(by_name) == {
        "RUN vx run build test",
        "core#build",
        "app#build",
        "app#test",
        "pytest session",
    }, sorted(by_name)
    run = by_name["RUN vx run build test"]
    trace_id, run_id = run["context"]["trace_id"], run["context"]["span_id"]
    assert run["parent_id"] is None
    assert run["status_code"] == "ERROR"
    assert run["attributes"]["cicd.pipeline.name"] == "vx run build test"
    assert run["attributes"]["cicd.pipeline.run.id"] == result.summary["run_id"]  # type: ignore[index]
    assert run["attributes"]["cicd.pipeline.result"] == "failure"
    assert run["attributes"]["vx.tasks.total"] == 3
    for id, outcome in (
        ("core#build", "success"),
        ("app#build", "success"),
        ("app#test", "failure"),
    ):
        span = by_name[id]
        assert span["context"]["trace_id"] == trace_id
        assert span["parent_id"] == run_id
        attributes = span["attributes"]
        assert attributes["cicd.pipeline.task.name"] == id
        assert attributes["cicd.pipeline.task.run.id"] == f"{result.summary['run_id']}/{id}"  # type: ignore[index]
        assert attributes["cicd.pipeline.task.run.result"] == outcome
        assert attributes["vx.cache.status"] == "miss"
    failed = by_name["app#test"]
    assert failed["status_code"] == "ERROR"
    assert failed["attributes"]["process.exit.code"] == 3
    assert "FAILED test_x" in json.dumps(failed["events"])
    child = by_name["pytest session"]
    assert child["context"]["trace_id"] == trace_id
    assert child["parent_id"] == by_name["core#build"]["context"]["span_id"]

    # The second run is a full hit, with export on: the trace id is not in any key.
    again = ws.run_subprocess("run", "build", env=env)
    assert set(again.outcomes.values()) == {"cached"}, again.output
    spans = phoenix.wait_spans(project, 8)
    hits = [
        s
        for s in spans
        if s["name"] == "core#build" and s["attributes"]["vx.cache.status"] == "hit"
    ]
    assert len(hits) == 1
    assert hits[0]["attributes"]["vx.cache.source"] == "local"

    # The first run, replayed after the fact: a second trace with its recorded start.
    first = result.summary["run_id"]  # type: ignore[index]
    replayed = ws.run_subprocess("replay", first, "--otel", env=env)
    assert replayed.exit_code == 0, replayed.output
    spans = phoenix.wait_spans(project, 12)
    runs = [s for s in spans if s["name"] == "RUN vx run build test"]
    assert len(runs) == 2
    original, replay = sorted(runs, key=lambda s: s["attributes"].get("vx.replay", False))
    assert replay["attributes"]["vx.replay"] is True
    assert replay["attributes"]["cicd.pipeline.run.id"] == first
    assert replay["start_time"] == original["start_time"]
    assert replay["context"]["trace_id"] != trace_id
    in_replay = [s for s in spans if s["context"]["trace_id"] == replay["context"]["trace_id"]]
    assert sorted(s["name"] for s in in_replay) == sorted(
        ["RUN vx run build test", "core#build", "app#build", "app#test"]
    )
