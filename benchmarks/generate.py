"""Generate a synthetic monorepo that vx and Turborepo can both run.

N projects in a layered dependency DAG; each has ``build`` (depends on ``^build``, writes
``dist/``) and ``test`` (depends on ``build``) running the same cheap shell commands under
both tools. The tree is committed to a fresh git repository (Turborepo needs one).

    python benchmarks/generate.py OUT --projects 200 --files 10 --file-size 2000 \\
        --layers 8 --max-deps 3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD = "mkdir -p dist && cat src/*.py > dist/bundle.txt"
TEST = "test -s dist/bundle.txt"
NPM_VERSION = "10.9.2"


@dataclass(frozen=True)
class Shape:
    projects: int = 200
    files: int = 10
    file_size: int = 2000
    layers: int = 8
    max_deps: int = 3
    seed: int = 1


def project_name(index: int) -> str:
    return f"p{index:04d}"


def dependency_graph(shape: Shape) -> list[list[int]]:
    """Each project depends on up to ``max_deps`` projects of earlier layers (deterministic)."""
    rng = random.Random(shape.seed)
    layer_of = [i * shape.layers // shape.projects for i in range(shape.projects)]
    deps: list[list[int]] = []
    for index in range(shape.projects):
        lower = [j for j in range(index) if layer_of[j] < layer_of[index]]
        count = min(len(lower), rng.randint(0, shape.max_deps))
        deps.append(sorted(rng.sample(lower, count)) if count else [])
    return deps


def _source(rng: random.Random, size: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "value", "result", "items", "count"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = f"{rng.choice(words)}_{rng.randint(0, 9999)} = {rng.randint(0, 10**6)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines)


def generate(out: Path, shape: Shape) -> Path:
    """Write the monorepo under ``out`` (replacing it) and commit it; returns ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = random.Random(shape.seed * 7919)
    deps = dependency_graph(shape)
    (out / ".gitignore").write_text("dist/\nnode_modules/\n.turbo/\n.vx/\n")
    (out / "pyproject.toml").write_text('[tool.vx]\nmembers = ["packages/*"]\n')
    (out / "package.json").write_text(
        json.dumps(
            {
                "name": "bench-root",
                "private": True,
                "workspaces": ["packages/*"],
                "packageManager": f"npm@{NPM_VERSION}",
            },
            indent=2,
        )
        + "\n"
    )
    (out / "turbo.json").write_text(
        json.dumps(
            {
                "$schema": "https://turborepo.com/schema.json",
                "tasks": {
                    "build": {"dependsOn": ["^build"], "outputs": ["dist/**"]},
                    "test": {"dependsOn": ["build"], "outputs": []},
                },
            },
            indent=2,
        )
        + "\n"
    )
    for index in range(shape.projects):
        name = project_name(index)
        directory = out / "packages" / name
        (directory / "src").mkdir(parents=True)
        for file in range(shape.files):
            (directory / "src" / f"m{file:03d}.py").write_text(_source(rng, shape.file_size))
        dep_names = [project_name(d) for d in deps[index]]
        requirements = ", ".join(f'"{d}"' for d in dep_names)
        (directory / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\nversion = "0.0.0"\ndependencies = [{requirements}]\n\n'
            f'[tool.vx.tasks.build]\ncmd = "{BUILD}"\ndepends_on = ["^build"]\n'
            f'outputs = ["dist/**"]\n\n'
            f'[tool.vx.tasks.test]\ncmd = "{TEST}"\ndepends_on = ["build"]\n'
        )
        (directory / "package.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "version": "0.0.0",
                    "private": True,
                    "dependencies": {d: "*" for d in dep_names},
                    "scripts": {"build": BUILD, "test": TEST},
                },
                indent=2,
            )
            + "\n"
        )
    _git(out, "init", "-q", "-b", "main")
    _git(out, "add", "-A")
    _git(
        out,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "commit",
        "-q",
        "-m",
        "synthetic monorepo",
    )
    return out


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True)


def leaf_and_root(shape: Shape) -> tuple[str, str]:
    """A project nothing depends on (leaf) and one of the first layer with the most dependents."""
    deps = dependency_graph(shape)
    dependents = [0] * shape.projects
    for index in range(shape.projects):
        stack, seen = list(deps[index]), set()
        while stack:
            d = stack.pop()
            if d not in seen:
                seen.add(d)
                dependents[d] += 1
                stack.extend(deps[d])
    leaf = next(i for i in reversed(range(shape.projects)) if dependents[i] == 0)
    root = max(range(shape.projects), key=lambda i: (dependents[i], -i))
    return project_name(leaf), project_name(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--projects", type=int, default=Shape.projects)
    parser.add_argument("--files", type=int, default=Shape.files)
    parser.add_argument("--file-size", type=int, default=Shape.file_size)
    parser.add_argument("--layers", type=int, default=Shape.layers)
    parser.add_argument("--max-deps", type=int, default=Shape.max_deps)
    parser.add_argument("--seed", type=int, default=Shape.seed)
    args = parser.parse_args()
    shape = Shape(args.projects, args.files, args.file_size, args.layers, args.max_deps, args.seed)
    generate(args.out, shape)
    print(f"generated {shape.projects} projects in {args.out}")


if __name__ == "__main__":
    main()
