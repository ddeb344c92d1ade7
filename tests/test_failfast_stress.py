"""Fail-fast under stress: many runs where one task fails at a random moment while others are
mid-output, restoring from the cache or saving their results. Every run must end with its
summary and the failing task's exit code, never with a ``CancelledError`` traceback."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

PROJECTS = 6


def _files(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    files: dict[str, Any] = {"pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n'}
    failing = rng.randrange(PROJECTS)
    for index in range(PROJECTS):
        # Each task writes a lot of output and a large output file (slow to store); timings
        # are random, so the failure lands while others start, stream, finish or store.
        delay = rng.choice(["0", "0.01", "0.02", "0.05"])
        lines = rng.choice([10, 2000, 20000])
        script = (
            f"sleep {delay}; i=0; while [ $i -lt {lines // 200} ]; do "
            "yes 'a line of task output to stress the reporter' | head -n 200; "
            "i=$((i+1)); done; mkdir -p out && head -c 3000000 /dev/urandom > out/result"
        )
        if index == failing:
            script = f"sleep {rng.choice(['0', '0.01', '0.03'])}; echo failing; exit 3"
        files[f"p/t{index}/pyproject.toml"] = (
            f'[project]\nname = "t{index}"\n\n[tool.vx.tasks.build]\n'
            f'cmd = "{script}"\noutputs = ["out/**"]\n'
        )
    return files


@pytest.mark.slow
def test_fail_fast_always_ends_with_a_summary_and_the_failing_exit_code(
    vx_workspace: Make,
) -> None:
    for seed in range(40):
        ws = vx_workspace(_files(seed))
        for attempt in range(2):  # the second run restores the successful tasks' results
            result = ws.run("run", "build", "-j", "3", "--output-logs=errors-only")
            context = f"seed {seed}, run {attempt + 1}:\n{result.output[-2000:]}"
            assert result.exit_code == 3, context
            assert "Traceback" not in result.output, context
            assert " Tasks:" in result.stdout, context
            statuses = set(result.outcomes.values())
            assert "failed" in statuses, context
            assert statuses <= {"success", "cached", "failed", "cancelled", "skipped"}, context
            assert len(result.outcomes) == PROJECTS, context
