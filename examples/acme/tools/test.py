"""Run the tests of the project in the current directory with the standard library's unittest.

The project's src/ and the src/ of every workspace project it depends on (transitively) are
importable, so the tests need nothing installed, like tools/lint.py and tools/build.py.
"""

import os
import re
import sys
import tomllib
import unittest
from pathlib import Path

ROOT = Path(os.environ.get("VX_WORKSPACE_ROOT") or Path(__file__).resolve().parents[1])


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _projects() -> dict[str, tuple[Path, list[str]]]:
    """Workspace members: normalized name -> (directory, dependency names)."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vx"]["members"]
    projects = {}
    for pattern in members:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text())["project"]
            requirements = project.get("dependencies", [])
            names = [_normalize(re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0]) for r in requirements]
            projects[_normalize(project["name"])] = (pyproject.parent, names)
    return projects


def main() -> int:
    projects = _projects()
    name = _normalize(tomllib.loads(Path("pyproject.toml").read_text())["project"]["name"])
    seen, stack = [], [name]
    while stack:
        current = stack.pop()
        if current in projects and current not in seen:
            seen.append(current)
            stack.extend(projects[current][1])
    sys.path[:0] = [str(projects[n][0] / "src") for n in seen]
    suite = unittest.defaultTestLoader.discover("tests", top_level_dir="tests")
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    return 0 if result.wasSuccessful() and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
