"""Structural checks of the kernel: its import graph, and what plugins may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The plugin API types (Config, the plugin manager, the hook specifications, Parser and
#: CommandRegistry) refer to each other in annotations only, as pytest's do; no other kernel
#: module may be part of an import cycle, not even through annotations.
ANNOTATION_CYCLE = {"vx.cli", "vx.config", "vx.hookspecs", "vx.plugin_manager"}


def _kernel_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "vx").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(path: Path, modules: dict[str, Path], *, annotations: bool) -> set[str]:
    """Kernel modules ``path`` imports (at module level or in functions); imports under
    ``if TYPE_CHECKING:`` only when ``annotations``. The package ``vx`` itself (lazy
    re-exports) is not an edge."""
    found: set[str] = set()

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = type_only or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            if isinstance(child, ast.Import | ast.ImportFrom) and (annotations or not guarded):
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                else:
                    base = child.module or ""
                    names = [base, *(f"{base}.{alias.name}" for alias in child.names)]
                found.update(n for n in names if n in modules and n != "vx")
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_kernel_imports_have_no_cycle() -> None:
    modules = _kernel_modules()
    runtime = {name: _imports(path, modules, annotations=False) for name, path in modules.items()}
    assert _cycles(runtime) == []
    typed = {name: _imports(path, modules, annotations=True) for name, path in modules.items()}
    assert all(component <= ANNOTATION_CYCLE for component in _cycles(typed)), _cycles(typed)


def test_every_kernel_module_imports_on_its_own() -> None:
    """Each module imports first in a fresh interpreter (no import-order luck)."""
    names = sorted(_kernel_modules())
    script = (
        "import importlib, subprocess, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True,"
        " text=True)\n"
        "    if r.returncode: failed.append(name + ': ' + r.stderr.strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def _first_party_plugin_files() -> list[Path]:
    """Every first-party plugin: ``plugins/*``, the top-level ``vx_*`` packages (``vx_otel``,
    ``vx_sandbox`` ...) and the example plugins under ``docs/examples``."""
    packages = [
        *(ROOT / "plugins").glob("vx_*"),
        *ROOT.glob("vx_*"),
        *(path.parent for path in (ROOT / "docs" / "examples").glob("*/vx_*/__init__.py")),
    ]
    files = [file for package in packages if package.is_dir() for file in package.rglob("*.py")]
    assert any("docs/examples" in file.as_posix() for file in files)
    assert any(file.relative_to(ROOT).parts[0] == "plugins" for file in files)
    return sorted(files)


def test_first_party_plugins_use_only_the_public_api() -> None:
    """``import vx`` and ``from vx import NAME`` with NAME in ``vx.__all__``; ``vx.NAME``
    attributes likewise. Never ``vx.<module>``: that is what a third-party plugin sees."""
    import vx

    public = set(vx.__all__)
    problems = []
    for file in _first_party_plugin_files():
        tree = ast.parse(file.read_text())
        where = file.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [
                    f"{where}:{node.lineno}: import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("vx.")
                ]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("vx."):
                    problems.append(f"{where}:{node.lineno}: from {node.module} import ...")
                elif node.module == "vx":
                    problems += [
                        f"{where}:{node.lineno}: from vx import {alias.name} (not in vx.__all__)"
                        for alias in node.names
                        if alias.name not in public
                    ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "vx"
                and node.attr not in public
            ):
                problems.append(f"{where}:{node.lineno}: vx.{node.attr} (not in vx.__all__)")
    assert problems == []


def test_every_public_name_resolves() -> None:
    """In a fresh interpreter: each name of ``vx.__all__`` is importable from ``vx``, and
    ``import vx`` alone imports none of the kernel (the names load lazily)."""
    script = (
        "import sys, vx\n"
        "eager = sorted(m for m in sys.modules if m.startswith('vx.') and m != 'vx._version')\n"
        "missing = [n for n in vx.__all__ if getattr(vx, n, None) is None]\n"
        "print(eager, missing)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] []"


def test_first_party_hook_arguments_are_typed() -> None:
    """Hook implementations annotate every argument with a real type, never ``Any``."""
    problems = []
    for file in _first_party_plugin_files():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("vx_"):
                for arg in node.args.args:
                    if arg.arg == "self":
                        continue
                    annotation = ast.unparse(arg.annotation) if arg.annotation else "missing"
                    if annotation in ("missing", "Any", "typing.Any"):
                        where = f"{file.relative_to(ROOT)}:{node.lineno}"
                        problems.append(f"{where}: {node.name}({arg.arg}: {annotation})")
    assert problems == []
