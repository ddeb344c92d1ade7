"""``vx init`` on copies of real public monorepos' configuration and on edge cases: what it
proposes, that it keeps every byte of the files it edits, that a second run changes nothing,
and that the result loads (``vx graph``, ``vx run --dry``)."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import VxWorkspace, snapshot_tree

FIXTURES = Path(__file__).parent / "fixtures" / "init"
Make = Callable[..., VxWorkspace]


def _copy(name: str, tmp_path: Path, *dirs: str) -> VxWorkspace:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    for directory in dirs:
        (target / directory).mkdir(parents=True)
    return VxWorkspace(target)


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _vx_table(path: Path) -> dict[str, Any]:
    return dict(_toml(path).get("tool", {}).get("vx", {}))


def _only_additions(before: str, after: str) -> None:
    """Every line of ``before`` is still in ``after``, in order, unchanged."""
    import difflib

    removed = [
        line
        for line in difflib.ndiff(before.splitlines(), after.splitlines())
        if line.startswith("- ")
    ]
    assert removed == [], removed


def _postmodern(tmp_path: Path) -> VxWorkspace:
    return _copy(
        "postmodern-mono", tmp_path, "apps/mycli/tests", "apps/server/tests", "libs/greeter/tests"
    )


def test_uv_workspace_with_poe_tasks(tmp_path: Path) -> None:
    ws = _postmodern(tmp_path)
    originals = {p: p.read_text() for p in ws.path.rglob("pyproject.toml")}

    dry = ws.run_subprocess("init", "--dry")
    assert dry.exit_code == 0, dry.output
    assert "+[tool.vx.defaults.tasks.test]" in dry.stdout
    assert "nothing written" in dry.stdout
    assert {p: p.read_text() for p in originals} == originals

    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    root = _vx_table(ws.path / "pyproject.toml")
    assert root["members"] == ["libs/*", "apps/*"]  # from [tool.uv.workspace]
    templates = root["defaults"]["tasks"]
    # Every member has tests, ruff, pyright and a build backend: each template names all of
    # them, and no member file needs a table of its own.
    assert templates["test"] == {
        "cmd": "python -m pytest -q",
        "inputs": ["**", "^**/*.py", "^pyproject.toml"],
        "projects": ["*"],
    }
    assert templates["lint"] == {"cmd": "ruff check .", "projects": ["*"]}  # in the dev group
    assert templates["typecheck"]["cmd"] == "basedpyright"  # [tool.pyright] + basedpyright dep
    assert templates["build"] == {
        "cmd": "uv build --wheel --out-dir dist",
        "outputs": ["dist/**"],
        "projects": ["*"],
    }
    # The root's poe tasks: plain commands are root tasks; names the members have are not
    # (they would run the whole repository's tests once more); the sequence is listed.
    assert root["tasks"] == {
        "fmt": {"cmd": "ruff format ${PWD}"},
        "check": {"cmd": "basedpyright ${PWD}"},
        "echo": {"cmd": "echo ${PWD}"},
        "ci:fmt": {"cmd": "ruff format --check ${PWD}"},
        "ci:lint": {"cmd": "ruff check ${PWD}"},
    }
    assert "poe task 'all' is a sequence; not translated" in result.stdout
    assert "root poe task 'test' not translated" in result.stdout
    assert "wrote 1 file(s)" in result.stdout
    for member in ("apps/mycli", "apps/server", "libs/greeter"):
        path = ws.path / member / "pyproject.toml"
        assert path.read_text() == originals[path], member  # untouched
    for path, before in originals.items():
        _only_additions(before, path.read_text())
    plan = ws.run_subprocess("run", "lint", "--dry=json")
    assert plan.exit_code == 0, plan.output
    assert {task["id"] for task in json.loads(plan.stdout)["tasks"]} == {
        "postmodern-mycli#lint",
        "postmodern-server#lint",
        "postmodern-greeter#lint",
    }
    assert "# fail if not formatted" in (ws.path / "pyproject.toml").read_text()
    # The check that follows the write.
    assert "vx graph: 17 task(s) in 4 project(s)" in result.stdout
    assert "--dry: 17 task(s) planned, 0 cache hit(s)" in result.stdout

    written = snapshot_tree(ws.path)
    again = ws.run_subprocess("init", "--yes")
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.stdout
    assert snapshot_tree(ws.path) == written


def test_uv_workspace_whose_root_is_a_package(tmp_path: Path) -> None:
    ws = _copy("pydantic-ai", tmp_path, "tests")
    originals = {p: p.read_text() for p in ws.path.rglob("pyproject.toml")}
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    root = _vx_table(ws.path / "pyproject.toml")
    uv_members = _toml(ws.path / "pyproject.toml")["tool"]["uv"]["workspace"]["members"]
    assert root["members"] == uv_members
    templates = root["defaults"]["tasks"]
    # ruff and mypy are configured in the root's pyproject.toml (the examples' ruff
    # configuration extends it): a // input of the tasks that read it.
    assert templates == {
        "lint": {"cmd": "ruff check .", "inputs": ["**", "//pyproject.toml"], "projects": ["*"]},
        "typecheck": {
            "cmd": "mypy .",
            "inputs": ["**", "^**/*.py", "^pyproject.toml", "//pyproject.toml"],
            "projects": ["*"],
        },
        "build": {
            "cmd": "uv build --wheel --out-dir dist",
            "outputs": ["dist/**"],
            "projects": ["*"],
        },
    }
    # The root's own tests only (a bare pytest at the root would collect the members' too);
    # its build is the template's (a glob never selects the root: it opts in).
    assert root["tasks"] == {
        "test": {
            "cmd": "python -m pytest -q tests",
            "inputs": ["**", "^**/*.py", "^pyproject.toml"],
        },
        "build": {},
    }
    # One file written: the templates cover every member.
    assert "wrote 1 file(s)" in result.stdout
    for path, before in originals.items():
        if path != ws.path / "pyproject.toml":
            assert path.read_text() == before, path
    _only_additions(originals[ws.path / "pyproject.toml"], (ws.path / "pyproject.toml").read_text())
    assert f"vx graph: 17 task(s) in {len(uv_members) + 1} project(s)" in result.stdout

    def planned(task: str) -> dict[str, str]:
        plan = ws.run_subprocess("run", task, "--dry=json")
        assert plan.exit_code == 0, plan.output
        return {entry["id"]: entry["command"] for entry in json.loads(plan.stdout)["tasks"]}

    names = ["pydantic-ai-slim", "pydantic-evals", "pydantic-graph", "clai", "pydantic-ai-examples"]
    assert planned("lint") == {f"{name}#lint": "ruff check ." for name in names}  # not the root
    assert planned("build") == {
        f"{name}#build": "uv build --wheel --out-dir dist" for name in ["pydantic-ai", *names]
    }
    written = snapshot_tree(ws.path)
    assert "nothing to change" in ws.run_subprocess("init", "--yes").stdout
    assert snapshot_tree(ws.path) == written


def test_an_existing_per_project_opt_in_configuration_is_left_as_it_is(tmp_path: Path) -> None:
    """What vx init wrote before templates could name their projects: templates without
    ``projects`` and an empty table in every member. A new run changes nothing."""
    ws = _copy("pydantic-ai", tmp_path, "tests")
    root_file = ws.path / "pyproject.toml"
    members = _toml(root_file)["tool"]["uv"]["workspace"]["members"]
    root_file.write_text(
        root_file.read_text() + f"\n[tool.vx]\nmembers = {json.dumps(members)}\n\n"
        '[tool.vx.defaults.tasks.lint]\ncmd = "ruff check ."\n\n'
        '[tool.vx.defaults.tasks.typecheck]\ncmd = "mypy ."\n\n'
        '[tool.vx.defaults.tasks.build]\ncmd = "uv build --wheel --out-dir dist"\n'
        'outputs = ["dist/**"]\n\n'
        '[tool.vx.tasks.test]\ncmd = "python -m pytest -q tests"\n\n[tool.vx.tasks.build]\n'
    )
    for member in members:
        path = ws.path / member / "pyproject.toml"
        path.write_text(
            path.read_text() + "\n[tool.vx.tasks.lint]\n\n[tool.vx.tasks.typecheck]\n\n"
            "[tool.vx.tasks.build]\n"
        )
    before = snapshot_tree(ws.path)
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.stdout
    assert snapshot_tree(ws.path) == before


def test_templates_for_some_members(vx_workspace: Make) -> None:
    """``projects`` lists the members that use a template, or ``"*"`` with exclusions when
    that is shorter; members added later opt in, unless a template excludes them by name or
    they skip it."""
    ruff = "\n[tool.ruff]\nline-length = 99\n"
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
            "libs/a/pyproject.toml": '[project]\nname = "a"\n' + ruff,
            "libs/a/tests/test_a.py": "",
            "libs/b/pyproject.toml": '[project]\nname = "b"\n' + ruff,
            "libs/b/tests/test_b.py": "",
            "libs/c/pyproject.toml": '[project]\nname = "c"\n' + ruff,
            "libs/d/pyproject.toml": '[project]\nname = "d"\n',
        }
    )
    members = {p: p.read_text() for p in (ws.path / "libs").glob("*/pyproject.toml")}
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    templates = _vx_table(ws.path / "pyproject.toml")["defaults"]["tasks"]
    assert templates["lint"]["projects"] == ["*", "!d"]  # shorter than ["a", "b", "c"]
    assert templates["test"]["projects"] == ["a", "b"]
    assert {p: p.read_text() for p in members} == members  # no member file touched
    plan = ws.run_subprocess("run", "lint", "test", "--dry=json")
    assert plan.exit_code == 0, plan.output
    assert {t["id"] for t in json.loads(plan.stdout)["tasks"]} == {
        "a#lint",
        "b#lint",
        "c#lint",
        "a#test",
        "b#test",
    }
    assert "nothing to change" in ws.run_subprocess("init", "--yes").stdout

    # Later: d adopts ruff (lint excludes it by name), e arrives with tests and ruff but skips
    # the lint template.
    ws.write(
        {
            "libs/d/pyproject.toml": '[project]\nname = "d"\n' + ruff,
            "libs/e/pyproject.toml": (
                '[project]\nname = "e"\n\n[tool.vx]\nskip_templates = ["lint"]\n' + ruff
            ),
            "libs/e/tests/test_e.py": "",
        }
    )
    before = snapshot_tree(ws.path, skip=(".vx",))
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    assert "libs/d/pyproject.toml: template 'lint' excludes d (its projects); not enabled" in (
        result.stdout
    )
    after = snapshot_tree(ws.path, skip=(".vx",))
    changed = {path for path in after if after[path] != before.get(path)}
    assert changed == {"libs/e/pyproject.toml"}, changed
    assert _vx_table(ws.path / "libs/e/pyproject.toml") == {
        "skip_templates": ["lint"],
        "tasks": {"test": {}},  # test names a and b: e opts in
    }
    assert "nothing to change" in ws.run_subprocess("init", "--yes").stdout


def test_turbo_json_is_translated(tmp_path: Path) -> None:
    ws = _copy("turbo-template", tmp_path)
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    root = _vx_table(ws.path / "pyproject.toml")
    assert root["members"] == ["apps/backend"]  # the only directory with a pyproject.toml
    assert root["global_inputs"] == ["**/.env.*local"]
    assert root["global_env"] == [
        "NEXT_PUBLIC_VERCEL_ENV",
        "DATABASE_URL",
        "NODE_ENV",
        "SCRIPT_ENV",
    ]
    templates = root["defaults"]["tasks"]
    assert templates["lint"] == {"depends_on": ["^lint"]}
    assert templates["typecheck"] == {"depends_on": ["^typecheck"]}
    assert templates["format:check"] == {"cache": False}
    scripts = json.loads((ws.path / "apps/backend/package.json").read_text())["scripts"]
    tasks = _vx_table(ws.path / "apps/backend/pyproject.toml")["tasks"]
    for name in ("lint", "test", "typecheck", "format:check", "format:write"):
        assert tasks[name]["cmd"] == scripts[name]
    assert "dev" not in tasks  # persistent: a server, not a task
    assert "build" not in tasks  # no build script: the template for its build backend
    assert templates["build"] == {
        "cmd": "python -m build --wheel",
        "outputs": ["dist/**"],
        "projects": ["*"],
    }
    assert "projects" not in templates["lint"]  # each project declares its script as cmd
    # What could not be translated is listed.
    assert "turbo.json: dev is persistent" in result.stdout
    assert "apps/chrome/turbo.json: package configuration not translated" in result.stdout
    assert "integrationTest" in result.stdout
    assert "vx graph: 6 task(s) in 1 project(s)" in result.stdout

    plan = ws.run_subprocess("run", "typecheck", "--dry=json")
    assert plan.exit_code == 0, plan.output
    (entry,) = json.loads(plan.stdout)["tasks"]
    assert entry["command"] == "poetry run mypy ."
    assert ws.run_subprocess("init").stdout.count("nothing to change") == 1


def test_turbo_inputs_outputs_env_and_package_tasks(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "turbo.json": """{
              // comments are allowed in turbo.json
              "tasks": {
                "build": {
                  "dependsOn": ["^build", "codegen"],
                  "inputs": ["$TURBO_DEFAULT$", "!**/*.{md,txt}"],
                  "outputs": ["dist/**", "!dist/cache/**"],
                  "env": ["API_URL", "!SECRET"],
                  "passThroughEnv": ["HOME"],
                  "outputLogs": "new-only"
                },
                "codegen": {"cache": false},
                "@x/core#test": {"dependsOn": ["lib#gen", "@x/app#codegen"]},
              },
            }""",
            "packages/core/pyproject.toml": '[project]\nname = "core"\n',
            "packages/core/package.json": json.dumps(
                {"name": "@x/core", "scripts": {"build": "make dist", "test": "pytest"}}
            ),
            "packages/app/pyproject.toml": '[project]\nname = "app"\ndependencies = ["core"]\n',
            "packages/app/package.json": json.dumps(
                {"name": "@x/app", "scripts": {"build": "make", "codegen": "gen"}}
            ),
        }
    )
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    templates = _vx_table(ws.path / "pyproject.toml")["defaults"]["tasks"]
    assert templates["build"] == {
        "depends_on": ["^build", "codegen"],
        "inputs": ["**", "!**/*.md", "!**/*.txt"],
        "outputs": ["dist/**", "!dist/cache/**"],
        "env": ["API_URL"],
        "pass_env": ["HOME"],
    }
    core = _vx_table(ws.path / "packages/core/pyproject.toml")["tasks"]
    assert core["build"] == {"cmd": "make dist", "depends_on": ["^build"]}  # has no codegen
    # lib#gen names no Python project; @x/app#codegen is the task app#codegen.
    assert core["test"] == {"cmd": "pytest", "depends_on": ["app#codegen"]}
    app = _vx_table(ws.path / "packages/app/pyproject.toml")["tasks"]
    assert app == {"build": {"cmd": "make"}, "codegen": {"cmd": "gen"}}
    assert "exclusion '!SECRET' has no vx equivalent" in result.stdout
    assert "build.outputLogs has no vx equivalent" in result.stdout
    assert "test depends on lib#gen, which is not a task of a Python" in result.stdout
    assert "vx graph: 4 task(s) in 2 project(s)" in result.stdout


def test_a_single_project_gets_its_tasks_inline(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '# my project\n[project]\nname = "solo"\n\n'
                '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
                "\n[tool.ruff]\nline-length = 99  # ours\n\n"
                '[tool.poe.tasks]\ndocs = { shell = "mkdocs build", cwd = "docs" }\n'
                'serve = { script = "solo.app:main" }\n'
            ),
            "tests/test_solo.py": "def test_ok():\n    pass\n",
        }
    )
    before = (ws.path / "pyproject.toml").read_text()
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    table = _vx_table(ws.path / "pyproject.toml")
    assert "members" not in table
    assert "defaults" not in table
    assert table["tasks"] == {
        "docs": {"cmd": "mkdocs build", "cwd": "docs"},
        "test": {"cmd": "python -m pytest -q", "inputs": ["**", "^**/*.py", "^pyproject.toml"]},
        "lint": {"cmd": "ruff check ."},
        "build": {"cmd": "python -m build --wheel", "outputs": ["dist/**"]},
    }
    assert "poe task 'serve' (script) is not a cmd or shell task" in result.stdout
    _only_additions(before, (ws.path / "pyproject.toml").read_text())
    assert "vx graph: 4 task(s) in 1 project(s)" in result.stdout


def test_tox_nox_and_hatch(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
            "libs/a/pyproject.toml": (
                '[project]\nname = "a"\n\n[tool.hatch.envs.default.scripts]\n'
                'cov = "pytest --cov {args}"\nlint = ["ruff check .", "ruff format --check ."]\n'
                '\n[tool.hatch.envs.docs.scripts]\nbuild = "mkdocs build"\n'
            ),
            "libs/a/tox.ini": (
                "[tox]\nenvlist = py{311,312}, lint\n\n[testenv]\ncommands = pytest\n\n"
                "[testenv:lint]\ncommands = ruff check .\n"
            ),
            "libs/b/pyproject.toml": '[project]\nname = "b"\n',
            "libs/b/noxfile.py": (
                "import nox\n\n@nox.session\ndef tests(session):\n    session.run('pytest')\n\n"
                "@nox.session(name='type-check', python=['3.11'])\ndef mypy(session):\n"
                "    session.run('mypy')\n\ndef helper():\n    pass\n"
            ),
        }
    )
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    a = _vx_table(ws.path / "libs/a/pyproject.toml")["tasks"]
    assert a == {
        "cov": {"cmd": "hatch run cov"},
        "lint": {"cmd": "hatch run lint"},  # hatch comes before tox: tox's lint is listed
        "py311": {"cmd": "tox -e py311"},
        "py312": {"cmd": "tox -e py312"},
    }
    assert "tox 'lint' not used (the hatch task of the same name is)" in result.stdout
    assert "hatch environment 'docs' scripts (build) not translated" in result.stdout
    b = _vx_table(ws.path / "libs/b/pyproject.toml")["tasks"]
    assert b == {"tests": {"cmd": "nox -s tests"}, "type-check": {"cmd": "nox -s type-check"}}


def test_started_in_a_member_it_works_on_the_uv_workspace_root(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
            "libs/a/pyproject.toml": '[project]\nname = "a"\n\n[tool.ruff]\n',
        }
    )
    result = ws.run_subprocess("init", "--dry", cwd=ws.path / "libs" / "a")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"vx init: {ws.path}\n")
    assert '+members = ["libs/*"]' in result.stdout


def test_projects_with_different_tools_keep_their_own_command(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "libs/a/pyproject.toml": '[project]\nname = "a"\n\n[tool.pyright]\n',
            "libs/b/pyproject.toml": '[project]\nname = "b"\n\n[tool.mypy]\nstrict = true\n',
            "libs/c/pyproject.toml": '[project]\nname = "c"\n\n[tool.mypy]\n',
        }
    )
    before = {name: (ws.path / f"libs/{name}/pyproject.toml").read_text() for name in "abc"}
    result = ws.run_subprocess("init", "--yes")  # no root pyproject: one is written
    assert result.exit_code == 0, result.output
    root = _vx_table(ws.path / "pyproject.toml")
    assert root["members"] == ["libs/*"]
    assert root["defaults"]["tasks"]["typecheck"] == {
        "cmd": "mypy .",  # what most projects use (not the first one's)
        "inputs": ["**", "^**/*.py", "^pyproject.toml"],
        "projects": ["*"],
    }
    for name in "bc":  # untouched: the template covers them
        assert (ws.path / f"libs/{name}/pyproject.toml").read_text() == before[name]
    # a keeps only what differs from the template.
    assert _vx_table(ws.path / "libs/a/pyproject.toml")["tasks"] == {
        "typecheck": {"cmd": "pyright"}
    }
    plan = ws.run_subprocess("run", "typecheck", "--dry=json")
    assert plan.exit_code == 0, plan.output
    assert {t["id"]: t["command"] for t in json.loads(plan.stdout)["tasks"]} == {
        "a#typecheck": "pyright",
        "b#typecheck": "mypy .",
        "c#typecheck": "mypy .",
    }
    assert (ws.path / "pyproject.toml").read_text().startswith("# Workspace root written by")


def test_a_member_with_its_own_poe_task_keeps_it_beside_the_template(vx_workspace: Make) -> None:
    ruff = "\n[tool.ruff]\nline-length = 99\n"
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
            "libs/a/pyproject.toml": '[project]\nname = "a"\n' + ruff,
            "libs/b/pyproject.toml": (
                '[project]\nname = "b"\n' + ruff + '\n[tool.poe.tasks]\nlint = "ruff check src"\n'
            ),
            "libs/c/pyproject.toml": '[project]\nname = "c"\n' + ruff,
        }
    )
    before = {name: (ws.path / f"libs/{name}/pyproject.toml").read_text() for name in "ac"}
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    template = _vx_table(ws.path / "pyproject.toml")["defaults"]["tasks"]["lint"]
    assert template == {"cmd": "ruff check .", "projects": ["*"]}
    assert _vx_table(ws.path / "libs/b/pyproject.toml")["tasks"] == {
        "lint": {"cmd": "ruff check src"}
    }
    for name in "ac":
        assert (ws.path / f"libs/{name}/pyproject.toml").read_text() == before[name]
    plan = ws.run_subprocess("run", "lint", "--dry=json")
    assert plan.exit_code == 0, plan.output
    assert {t["id"]: t["command"] for t in json.loads(plan.stdout)["tasks"]} == {
        "a#lint": "ruff check .",
        "b#lint": "ruff check src",
        "c#lint": "ruff check .",
    }


def test_existing_configuration_is_kept(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\n# our members\nmembers = ["pkgs/*"]\n\n'
                '[tool.vx.defaults.tasks.lint]\ncmd = "flake8"  # not ruff\n'
            ),
            "pkgs/p/pyproject.toml": (
                '[project]\nname = "p"\ndependencies = ["ruff"]\n\n'
                '[tool.vx.tasks.test]\ncmd = "pytest -x"  # keep\n'
            ),
            "pkgs/p/tests/test_p.py": "",
        }
    )
    before = {p: p.read_text() for p in ws.path.rglob("pyproject.toml")}
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    root = _vx_table(ws.path / "pyproject.toml")
    assert root["members"] == ["pkgs/*"]
    assert root["defaults"]["tasks"] == {"lint": {"cmd": "flake8"}}  # theirs, not a new one
    tasks = _vx_table(ws.path / "pkgs/p/pyproject.toml")["tasks"]
    assert tasks == {"test": {"cmd": "pytest -x"}, "lint": {}}  # lint opts in to their template
    assert (ws.path / "pyproject.toml").read_text() == before[ws.path / "pyproject.toml"]
    _only_additions(
        before[ws.path / "pkgs/p/pyproject.toml"], (ws.path / "pkgs/p/pyproject.toml").read_text()
    )


def test_an_existing_tool_vx_table_gets_the_new_keys_in_place(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                "# root\n[tool.vx]\nconcurrency = 2  # two\n\n"
                '[tool.uv.workspace]\nmembers = ["libs/*"]\n'
            ),
            "libs/a/pyproject.toml": '[project]\nname = "a"\n[tool.ruff]\n',
        }
    )
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 0, result.output
    assert (ws.path / "pyproject.toml").read_text() == (
        '# root\n[tool.vx]\nconcurrency = 2  # two\nmembers = ["libs/*"]\n\n'
        '[tool.uv.workspace]\nmembers = ["libs/*"]\n\n'
        '[tool.vx.defaults.tasks.lint]\ncmd = "ruff check ."\nprojects = ["*"]\n'
    )
    assert (ws.path / "libs/a/pyproject.toml").read_text() == '[project]\nname = "a"\n[tool.ruff]\n'


@pytest.mark.parametrize("broken", ["libs/b/pyproject.toml", "pyproject.toml"])
def test_unreadable_toml_names_the_file_and_writes_nothing(vx_workspace: Make, broken: str) -> None:
    files = {
        "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
        "libs/a/pyproject.toml": '[project]\nname = "a"\n',
        "libs/b/pyproject.toml": '[project]\nname = "b"\n',
    }
    ws = vx_workspace({**files, broken: '[project\nname = "b"\n'})
    before = snapshot_tree(ws.path)
    result = ws.run_subprocess("init", "--yes")
    assert result.exit_code == 78, result.output
    assert f"{ws.path / broken}: invalid TOML" in result.stderr
    assert "fix it and run vx init again" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot_tree(ws.path) == before


def test_no_python_project(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello\n")
    result = VxWorkspace(tmp_path).run_subprocess("init")
    assert result.exit_code == 2, result.output
    assert "no pyproject.toml" in result.stderr
    assert "Traceback" not in result.output


def test_without_a_terminal_it_asks_for_yes(tmp_path: Path) -> None:
    ws = _postmodern(tmp_path)
    before = snapshot_tree(ws.path)
    result = ws.run("init")  # stdin of the test run is not a terminal
    assert result.exit_code == 2
    assert "pass --yes to write them, or --dry to only print them" in result.stderr
    assert "+[tool.vx]" in result.stdout  # the diff was shown
    assert snapshot_tree(ws.path) == before


@pytest.mark.parametrize("answer", ["y\n", "n\n"])
def test_confirmation_on_a_terminal(tmp_path: Path, answer: str) -> None:
    """A real pseudo-terminal: the prompt is answered like a user would."""
    import os
    import pty
    import subprocess
    import sys

    ws = _postmodern(tmp_path)
    before = snapshot_tree(ws.path)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "vx", "init"],
        cwd=ws.path,
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    os.write(leader, answer.encode())
    stdout, stderr = process.communicate(timeout=120)
    os.close(leader)
    assert "write 1 file(s)? [y/N]" in stdout
    if answer.startswith("y"):
        assert process.returncode == 0, stdout + stderr
        assert "members" in _vx_table(ws.path / "pyproject.toml")
    else:
        assert process.returncode == 1
        assert "nothing written" in stdout
        assert snapshot_tree(ws.path) == before
