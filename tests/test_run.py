"""``vx run``: graph order, parallelism, ``--continue`` modes, exit codes, environment, cwd,
task templates, the root project and ``^task`` pass-through — driven as a user would."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import RunResult, VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

ROOT = {"tool": {"vx": {"members": ["packages/*"]}}}


def project(name: str, tasks: dict[str, Any], *, deps: tuple[str, ...] = ()) -> dict[str, Any]:
    table: dict[str, Any] = {"name": name}
    if deps:
        table["dependencies"] = list(deps)
    return {"project": table, "tool": {"vx": {"tasks": tasks}}}


def task_lines(result: RunResult, task_id: str) -> list[str]:
    """Lines the terminal reporter streamed for ``task_id`` (prefix removed)."""
    prefix = f"{task_id}: "
    return [
        line[len(prefix) :]
        for line in result.stdout.splitlines()
        if line.startswith(prefix) and not line[len(prefix) :].startswith(VX_STATUS)
    ]


#: What the terminal reporter itself prints on a task's behalf (not the task's output).
VX_STATUS = ("cache hit, ", "cache miss, ", "cancelled", "failed with exit code ")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies awaiting an absent reaper count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - reused by another user's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids: list[int], timeout: float = 3.0) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        survivors = [pid for pid in pids if alive(pid)]
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(0.05)


# -- graph order and parallelism ---------------------------------------------------------

LOG = 'echo "start $VX_TASK_ID" >> "$VX_WORKSPACE_ROOT/log"; sleep 0.05; '
LOG_END = 'echo "end $VX_TASK_ID" >> "$VX_WORKSPACE_ROOT/log"'


def test_dependencies_finish_before_dependents_start(vx_workspace: Make) -> None:
    logged = LOG + LOG_END
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/core/pyproject.toml": project("acme-core", {"build": {"cmd": logged}}),
            "packages/util/pyproject.toml": project("acme-util", {"build": {"cmd": logged}}),
            "packages/api/pyproject.toml": project(
                "acme-api",
                {
                    "build": {"cmd": logged, "depends_on": ["^build"]},
                    "test": {"cmd": logged, "depends_on": ["build"]},
                },
                deps=("acme-core", "acme-util", "httpx>=0.27"),
            ),
            "packages/web/pyproject.toml": project(
                "acme-web",
                {
                    "build": {"cmd": logged, "depends_on": ["^build"]},
                    "test": {"cmd": logged, "depends_on": ["build", "acme-api#test"]},
                },
                deps=("acme-api",),
            ),
        }
    )
    result = ws.run("run", "test", "-j", "4")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes.values()) == {"success"}
    edges = {
        "acme-api#build": ["acme-core#build", "acme-util#build"],
        "acme-api#test": ["acme-api#build"],
        "acme-web#build": ["acme-api#build"],
        "acme-web#test": ["acme-web#build", "acme-api#test"],
    }
    assert set(result.outcomes) == set(edges) | {"acme-core#build", "acme-util#build"}
    log = (ws.path / "log").read_text().splitlines()
    for task, dependencies in edges.items():
        for dependency in dependencies:
            assert log.index(f"end {dependency}") < log.index(f"start {task}"), log


def test_default_priority_runs_tasks_with_more_dependents_first(vx_workspace: Make) -> None:
    logged = LOG + LOG_END
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            # 'aaa' comes first in declaration order but nothing depends on it.
            "packages/aaa/pyproject.toml": project("aaa", {"build": {"cmd": logged}}),
            "packages/lib/pyproject.toml": project("lib", {"build": {"cmd": logged}}),
            "packages/x/pyproject.toml": project(
                "x", {"build": {"cmd": logged, "depends_on": ["^build"]}}, deps=("lib",)
            ),
            "packages/y/pyproject.toml": project(
                "y", {"build": {"cmd": logged, "depends_on": ["^build"]}}, deps=("x",)
            ),
        }
    )
    result = ws.run("run", "build", "-j", "1")
    assert result.exit_code == 0, result.output
    starts = [line.split()[1] for line in (ws.path / "log").read_text().splitlines()]
    assert starts[0] == "lib#build", starts


def track(seconds: float) -> str:
    """Shell that records how many tracked tasks are running as it starts, then works."""
    return (
        'd="$VX_WORKSPACE_ROOT/running"; mkdir -p "$d"; touch "$d/$$"; '
        'ls "$d" | wc -l >> "$VX_WORKSPACE_ROOT/counts"; '
        f'sleep {seconds}; rm "$d/$$"'
    )


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_observed_concurrency_never_exceeds_and_reaches_the_limit(
    vx_workspace: Make, jobs: int
) -> None:
    files: dict[str, Any] = {"pyproject.toml": ROOT}
    # Serial runs need no long overlap window to prove anything: keep them quick.
    work = {"work": {"cmd": track(0.1 if jobs == 1 else 0.4)}}
    for index in range(5):
        files[f"packages/p{index}/pyproject.toml"] = project(f"p{index}", work)
    ws = vx_workspace(files)
    result = ws.run("run", "work", "-j", str(jobs))
    assert result.exit_code == 0, result.output
    counts = [int(line) for line in (ws.path / "counts").read_text().split()]
    assert len(counts) == 5
    assert max(counts) == jobs, counts


def test_concurrency_from_config_and_percentage(vx_workspace: Make) -> None:
    files: dict[str, Any] = {
        "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], "concurrency": 1}}}
    }
    for index in range(3):
        files[f"packages/p{index}/pyproject.toml"] = project(
            f"p{index}", {"work": {"cmd": track(0.1)}}
        )
    ws = vx_workspace(files)
    result = ws.run("run", "work")
    assert result.exit_code == 0, result.output
    assert max(int(n) for n in (ws.path / "counts").read_text().split()) == 1
    # -j beats [tool.vx] concurrency; a percentage is at least 1.
    plan = ws.run("run", "work", "--dry=json", "-j", "1%")
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout)["concurrency"] == 1


# -- --continue modes ----------------------------------------------------------------------

CONTINUE_TASKS = {
    "bad": {"cmd": "while [ ! -e started ]; do sleep 0.02; done; echo boom; exit 3"},
    "good": {"cmd": "touch started; sleep 0.4; touch good.ran"},
    "after_bad": {"cmd": "touch after_bad.ran", "depends_on": ["bad"]},
    "after_after_bad": {"cmd": "touch after_after_bad.ran", "depends_on": ["after_bad"]},
    "after_good": {"cmd": "touch after_good.ran", "depends_on": ["good"]},
}
ALL = list(CONTINUE_TASKS)


def continue_workspace(vx_workspace: Make, *, good_seconds: float = 0.4) -> VxWorkspace:
    """``good`` runs for ``good_seconds`` (long when it is meant to be cancelled)."""
    tasks = {
        **CONTINUE_TASKS,
        "good": {"cmd": f"touch started; sleep {good_seconds}; touch good.ran"},
    }
    return vx_workspace({"pyproject.toml": ROOT, "packages/p/pyproject.toml": project("p", tasks)})


def ran(ws: VxWorkspace) -> set[str]:
    return {path.stem for path in (ws.path / "packages/p").glob("*.ran")}


def assert_skipped(result: RunResult, *ids: str) -> None:
    for id in ids:
        entry = result.task(id)
        assert entry["status"] == "skipped", entry
        assert entry["exit_code"] == 1, entry
        assert entry["duration_ms"] == 0, entry


def test_continue_never_is_the_default_and_fails_fast(vx_workspace: Make) -> None:
    ws = continue_workspace(vx_workspace, good_seconds=30)
    result = ws.run("run", *ALL, "-j", "2")
    assert result.exit_code != 0
    assert result.outcomes == {
        "p#bad": "failed",
        "p#good": "cancelled",
        "p#after_bad": "skipped",
        "p#after_after_bad": "skipped",
        "p#after_good": "skipped",
    }
    assert_skipped(result, "p#after_bad", "p#after_after_bad", "p#after_good")
    assert ran(ws) == set()  # 'good' was terminated before finishing; nothing else started
    explicit = continue_workspace(vx_workspace, good_seconds=30)
    again = explicit.run("run", *ALL, "-j", "2", "--continue=never")
    assert again.outcomes == result.outcomes


def test_continue_dependencies_successful(vx_workspace: Make) -> None:
    ws = continue_workspace(vx_workspace)
    result = ws.run("run", *ALL, "-j", "2", "--continue=dependencies-successful")
    assert result.exit_code == 3, result.output
    assert result.outcomes == {
        "p#bad": "failed",
        "p#good": "success",
        "p#after_good": "success",
        "p#after_bad": "skipped",
        "p#after_after_bad": "skipped",
    }
    assert_skipped(result, "p#after_bad", "p#after_after_bad")
    assert ran(ws) == {"good", "after_good"}  # nothing was spawned for the skipped tasks
    assert result.task("p#bad")["exit_code"] == 3


@pytest.mark.parametrize(
    "args",
    [
        [*ALL, "--continue=always"],
        [*ALL, "--continue"],  # the bare flag means always
        ["--continue", *ALL],  # ... also before the task names
    ],
    ids=["always", "bare-after-tasks", "bare-before-tasks"],
)
def test_continue_always_runs_everything(vx_workspace: Make, args: list[str]) -> None:
    ws = continue_workspace(vx_workspace)
    result = ws.run("run", "-j", "2", *args)
    assert result.exit_code == 3, result.output
    assert result.outcomes == {
        "p#bad": "failed",
        "p#good": "success",
        "p#after_good": "success",
        "p#after_bad": "success",
        "p#after_after_bad": "success",
    }
    assert ran(ws) == {"good", "after_good", "after_bad", "after_after_bad"}


def test_bad_continue_mode_is_a_usage_error(vx_workspace: Make) -> None:
    ws = continue_workspace(vx_workspace)
    result = ws.run("run", "good", "--continue=sometimes")
    assert result.exit_code == 2
    assert "dependencies-successful" in result.stderr
    assert ran(ws) == set()


def test_fail_fast_terminates_a_running_sibling_and_its_children(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/p/pyproject.toml": project(
                "p",
                {
                    "bad": {"cmd": "while [ ! -s child.pid ]; do sleep 0.02; done; exit 4"},
                    "slow": {
                        "cmd": "echo $$ > shell.pid; sleep 30 & echo $! > child.pid; wait; "
                        "touch slow.ran"
                    },
                },
            ),
        }
    )
    result = ws.run("run", "bad", "slow", "-j", "2")
    assert result.exit_code != 0
    assert result.outcomes == {"p#bad": "failed", "p#slow": "cancelled"}
    assert "p#slow: cancelled" in result.stdout
    project_dir = ws.path / "packages/p"
    pids = [int((project_dir / name).read_text()) for name in ("shell.pid", "child.pid")]
    assert wait_dead(pids) == []
    assert not (project_dir / "slow.ran").exists()


def test_fail_fast_exit_code_is_the_failing_tasks_not_the_cancelled_ones(
    vx_workspace: Make,
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/p/pyproject.toml": project(
                "p",
                {
                    "bad": {"cmd": "while [ ! -e started ]; do sleep 0.02; done; exit 4"},
                    "slow": {"cmd": "touch started; sleep 30"},
                },
            ),
        }
    )
    result = ws.run("run", "bad", "slow", "-j", "2")
    assert result.outcomes == {"p#bad": "failed", "p#slow": "cancelled"}
    assert result.exit_code == 4


# -- exit codes and commands -------------------------------------------------------------------


def test_exit_code_is_the_highest_task_exit_code(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"check": {"cmd": "exit 3"}}),
            "packages/b/pyproject.toml": project("b", {"check": {"cmd": "exit 5"}}),
            "packages/c/pyproject.toml": project("c", {"check": {"cmd": "exit 0"}}),
        }
    )
    result = ws.run("run", "check", "--continue")
    assert result.exit_code == 5, result.output
    assert result.task("a#check")["exit_code"] == 3
    assert result.task("b#check")["exit_code"] == 5
    assert result.outcomes["c#check"] == "success"
    assert result.summary is not None
    assert result.summary["exit_code"] == 5


def test_all_successful_exits_zero(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"check": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "check")
    assert result.exit_code == 0
    assert result.outcomes == {"a#check": "success"}
    assert result.task("a#check")["exit_code"] == 0


def test_list_command_is_executed_without_a_shell(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a", {"show": {"cmd": ["printf", "[%s]\\n", "a b", "$HOME", "*", "x;y"]}}
            ),
        }
    )
    result = ws.run("run", "show")
    assert result.exit_code == 0, result.output
    assert task_lines(result, "a#show") == ["[a b]", "[$HOME]", "[*]", "[x;y]"]


def test_string_command_runs_in_a_shell(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a", {"show": {"cmd": "X=1; for i in 1 2; do echo line$i$X; done | sort -r"}}
            ),
        }
    )
    result = ws.run("run", "show")
    assert task_lines(result, "a#show") == ["line21", "line11"]


def test_missing_program_exits_127(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "listed": {"cmd": ["vx-no-such-program-xyz", "--flag"]},
                    "shell": {"cmd": "vx-no-such-program-xyz --flag"},
                },
            ),
        }
    )
    result = ws.run("run", "listed", "shell", "--continue")
    assert result.exit_code == 127, result.output
    assert result.task("a#listed")["exit_code"] == 127
    assert result.task("a#shell")["exit_code"] == 127
    assert result.outcomes == {"a#listed": "failed", "a#shell": "failed"}
    assert "command not found: vx-no-such-program-xyz" in result.stdout
    assert "Traceback" not in result.output


def test_task_killed_by_a_signal_fails_with_128_plus_signal(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"die": {"cmd": ["sh", "-c", "kill -9 $$"]}}),
        }
    )
    result = ws.run("run", "die")
    assert result.outcomes == {"a#die": "failed"}
    assert result.exit_code == 137


def test_task_without_cmd_groups_its_dependencies(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "lint": {"cmd": "touch lint.ran"},
                    "test": {"cmd": "touch test.ran"},
                    "check": {"depends_on": ["lint", "test"]},
                },
            ),
        }
    )
    result = ws.run("run", "check")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#lint": "success", "a#test": "success", "a#check": "success"}
    assert (ws.path / "packages/a/lint.ran").exists()
    assert (ws.path / "packages/a/test.ran").exists()


def test_task_id_runs_one_task_and_its_dependencies(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("acme-a", {"build": {"cmd": "true"}}),
            "packages/b/pyproject.toml": project(
                "acme-b", {"build": {"cmd": "true", "depends_on": ["^build"]}}, deps=("acme-a",)
            ),
            "packages/c/pyproject.toml": project("acme-c", {"build": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "Acme_B#build")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"acme-a#build", "acme-b#build"}


# -- environment ---------------------------------------------------------------------------

SHOW_ENV = 'echo "secret=${MY_VX_SECRET-unset}"; echo "other=${MY_VX_OTHER-unset}"'


def env_workspace(vx_workspace: Make, root: dict[str, Any], task: dict[str, Any]) -> VxWorkspace:
    return vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], **root}}},
            "packages/a/pyproject.toml": project("a", {"show": {"cmd": SHOW_ENV, **task}}),
        }
    )


CALLER_ENV = {"MY_VX_SECRET": "s3cret", "MY_VX_OTHER": "other"}


def test_strict_env_hides_undeclared_variables(vx_workspace: Make) -> None:
    ws = env_workspace(vx_workspace, {}, {})
    result = ws.run("run", "show", env=CALLER_ENV)
    assert result.exit_code == 0, result.output
    assert task_lines(result, "a#show") == ["secret=unset", "other=unset"]


@pytest.mark.parametrize(
    ("root", "task", "args"),
    [
        ({}, {"env": ["MY_VX_SECRET"]}, []),
        ({}, {"pass_env": ["MY_VX_SECRET"]}, []),
        ({}, {"env": ["MY_VX_SEC*"]}, []),
        ({"global_env": ["MY_VX_SECRET"]}, {}, []),
    ],
    ids=["env", "pass_env", "env-glob", "global_env"],
)
def test_declared_variables_are_passed(
    vx_workspace: Make, root: dict[str, Any], task: dict[str, Any], args: list[str]
) -> None:
    ws = env_workspace(vx_workspace, root, task)
    result = ws.run("run", "show", *args, env=CALLER_ENV)
    assert result.exit_code == 0, result.output
    assert task_lines(result, "a#show") == ["secret=s3cret", "other=unset"]


@pytest.mark.parametrize(
    ("root", "args"),
    [({}, ["--env-mode=loose"]), ({"env_mode": "loose"}, [])],
    ids=["flag", "config"],
)
def test_loose_env_mode_passes_everything(
    vx_workspace: Make, root: dict[str, Any], args: list[str]
) -> None:
    ws = env_workspace(vx_workspace, root, {})
    result = ws.run("run", "show", *args, env=CALLER_ENV)
    assert result.exit_code == 0, result.output
    assert task_lines(result, "a#show") == ["secret=s3cret", "other=other"]


def test_env_mode_flag_beats_config(vx_workspace: Make) -> None:
    ws = env_workspace(vx_workspace, {"env_mode": "loose"}, {})
    result = ws.run("run", "show", "--env-mode=strict", env=CALLER_ENV)
    assert task_lines(result, "a#show") == ["secret=unset", "other=unset"]


def test_vx_variables_and_base_environment_are_set(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/api/pyproject.toml": project(
                "acme-api",
                {
                    "show": {
                        "cmd": 'echo "id=$VX_TASK_ID"; echo "dir=$VX_PROJECT_DIR"; '
                        'echo "root=$VX_WORKSPACE_ROOT"; echo "path=${PATH:+set}"; '
                        'echo "lang=${LANG-unset}"'
                    }
                },
            ),
        }
    )
    result = ws.run("run", "show", env={"LANG": "C.UTF-8"})
    assert task_lines(result, "acme-api#show") == [
        "id=acme-api#show",
        f"dir={ws.path / 'packages/api'}",
        f"root={ws.path}",
        "path=set",
        "lang=C.UTF-8",
    ]


# -- cwd, templates, root project, ^task --------------------------------------------------------


def test_tasks_run_in_the_project_directory_or_cwd(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "here": {"cmd": "pwd -P"},
                    "there": {"cmd": ["pwd", "-P"], "cwd": "sub/dir"},
                    "up": {"cmd": "pwd -P", "cwd": ".."},
                },
            ),
            "packages/a/sub/dir/.keep": "",
        }
    )
    result = ws.run("run", "here", "there", "up")
    assert result.exit_code == 0, result.output
    assert task_lines(result, "a#here") == [str(ws.path / "packages/a")]
    assert task_lines(result, "a#there") == [str(ws.path / "packages/a/sub/dir")]
    assert task_lines(result, "a#up") == [str(ws.path / "packages")]


def test_missing_cwd_fails_the_task_clearly(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"here": {"cmd": "pwd", "cwd": "nope"}}),
        }
    )
    result = ws.run("run", "here")
    assert result.exit_code != 0
    assert result.outcomes == {"a#here": "failed"}
    assert "nope" in result.stdout
    assert "Traceback" not in result.output


def test_defaults_templates_are_opt_in_and_overridable(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "members": ["packages/*"],
                        "defaults": {
                            "tasks": {
                                "test": {
                                    "cmd": 'echo "default test in $(basename $PWD) ${MY_VX_T-}"',
                                    "env": ["MY_VX_T"],
                                },
                            }
                        },
                    }
                }
            },
            # opts in with an empty table: gets the template as is
            "packages/a/pyproject.toml": project("a", {"test": {}}),
            # overrides cmd; keeps the template's env
            "packages/b/pyproject.toml": project(
                "b", {"test": {"cmd": 'echo "own test ${MY_VX_T-}"'}}
            ),
            # does not declare the task: does not get it
            "packages/c/pyproject.toml": project("c", {"other": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "test", env={"MY_VX_T": "t"})
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"a#test", "b#test"}
    assert task_lines(result, "a#test") == ["default test in a t"]
    assert task_lines(result, "b#test") == ["own test t"]


def test_defaults_template_depends_on_is_overridable(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "members": ["packages/*"],
                        "defaults": {"tasks": {"test": {"cmd": "true", "depends_on": ["lint"]}}},
                    }
                }
            },
            "packages/a/pyproject.toml": project("a", {"test": {}, "lint": {"cmd": "true"}}),
            "packages/b/pyproject.toml": project("b", {"test": {"depends_on": []}}),
        }
    )
    result = ws.run("run", "test")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"a#test", "a#lint", "b#test"}


def test_root_project_tasks(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "members": ["packages/*"],
                        "tasks": {
                            "lint": {"cmd": "pwd -P"},
                            "check": {"depends_on": ["lint", "acme-a#check"]},
                        },
                    }
                }
            },
            "packages/a/pyproject.toml": project("acme-a", {"check": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "lint")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"//#lint": "success"}
    assert task_lines(result, "//#lint") == [str(ws.path)]
    both = ws.run("run", "//#check")
    assert both.exit_code == 0, both.output
    assert set(both.outcomes) == {"//#check", "//#lint", "acme-a#check"}


def test_named_root_project(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "project": {"name": "Acme_Monorepo"},
                "tool": {"vx": {"members": ["packages/*"], "tasks": {"lint": {"cmd": "true"}}}},
            },
            "packages/a/pyproject.toml": project("a", {"lint": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "lint")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"acme-monorepo#lint", "a#lint"}


def test_caret_dependency_passes_through_a_project_without_the_task(vx_workspace: Make) -> None:
    logged = LOG + LOG_END
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/core/pyproject.toml": project("core", {"build": {"cmd": logged}}),
            # 'middle' has no build task: app#build must still wait for core#build.
            "packages/middle/pyproject.toml": project(
                "middle", {"lint": {"cmd": "true"}}, deps=("core",)
            ),
            "packages/app/pyproject.toml": project(
                "app", {"build": {"cmd": logged, "depends_on": ["^build"]}}, deps=("middle",)
            ),
        }
    )
    result = ws.run("run", "app#build")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"core#build", "app#build"}
    log = (ws.path / "log").read_text().splitlines()
    assert log.index("end core#build") < log.index("start app#build")


def test_project_depends_on_adds_edges(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/tools/pyproject.toml": project("acme-tools", {"build": {"cmd": "true"}}),
            "packages/api/pyproject.toml": {
                "project": {"name": "acme-api"},
                "tool": {
                    "vx": {
                        "depends_on": ["acme_tools"],
                        "tasks": {"build": {"cmd": "true", "depends_on": ["^build"]}},
                    }
                },
            },
        }
    )
    result = ws.run("run", "acme-api#build")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"acme-tools#build", "acme-api#build"}


def test_project_without_name_uses_directory_name(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/My_Lib/pyproject.toml": {"tool": {"vx": {"tasks": {"t": {"cmd": "true"}}}}},
        }
    )
    result = ws.run("run", "t")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"my-lib#t": "success"}


def test_member_exclusion_glob(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*", "!packages/skip"]}}},
            "packages/a/pyproject.toml": project("a", {"t": {"cmd": "true"}}),
            "packages/skip/pyproject.toml": project("skip", {"t": {"cmd": "true"}}),
        }
    )
    result = ws.run("run", "t")
    assert result.outcomes == {"a#t": "success"}


def test_run_from_a_subdirectory_finds_the_workspace(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"t": {"cmd": "true"}}),
            "packages/a/src/a/__init__.py": "",
        }
    )
    result = ws.run("run", "t", cwd=ws.path / "packages/a/src/a")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#t": "success"}


def test_run_as_a_subprocess(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"t": {"cmd": "echo hi from $VX_TASK_ID"}}),
        }
    )
    result = ws.run_subprocess("run", "t")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#t": "success"}
    assert "a#t: hi from a#t" in result.stdout


def test_words_that_name_other_commands_are_parsed_as_the_full_parser_would(
    vx_workspace: Make,
) -> None:
    # Only the invoked command's options are built; a guess misled by a directory or a
    # task named like another command (graph, why) must still parse as before.
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/graph/pyproject.toml": project(
                "graph", {"why": {"cmd": "echo why-ran"}, "build": {"cmd": "echo built"}}
            ),
        }
    )
    packages = ws.path / "packages"
    result = ws.run_subprocess("-C", "graph", "run", "why", cwd=packages)
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"graph#why": "success"}
    result = ws.run_subprocess("-C", "graph", "run", "build", "--bogus", cwd=packages)
    assert result.exit_code == 2
    assert "unrecognized arguments: --bogus" in result.stderr
