"""The hook reference of ``docs/plugins.md``, generated from :mod:`vx.hookspecs`.

    python -m vx.hookref docs/plugins.md           # rewrite the reference section
    python -m vx.hookref --check docs/plugins.md   # exit 1 when it is out of date

The section lies between :data:`BEGIN` and :data:`END`; everything else in the file is left
alone. Groups follow the banner comments of ``vx/hookspecs.py``; each hook shows its
signature, its markers (firstresult, historic) and its whole docstring.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from pathlib import Path

__all__ = ["BEGIN", "END", "render", "update"]

BEGIN = "<!-- hook reference: generated from vx/hookspecs.py by `python -m vx.hookref` -->"
END = "<!-- end of hook reference -->"

_ROLE = re.compile(r":(?:class|attr|func|meth|data|mod|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def _markdown(text: str) -> str:
    """reStructuredText roles and literals as Markdown code spans."""
    return _LITERAL.sub(r"`\1`", _ROLE.sub(r"`\1`", text))


def _groups(source: str) -> list[tuple[str, str, int]]:
    """``(title, text, line)`` of each banner comment block, in file order."""
    lines = source.splitlines()
    groups = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("# ---"):
            body = []
            index += 1
            while index < len(lines) and not lines[index].startswith("# ---"):
                body.append(lines[index].removeprefix("#").strip())
                index += 1
            title, *text = body
            groups.append((title, " ".join(line for line in text if line), index))
        index += 1
    return groups


def render(hookspecs_path: Path | None = None) -> str:
    """The reference section (without the markers)."""
    from vx import hookspecs

    path = hookspecs_path or Path(inspect.getfile(hookspecs))
    source = path.read_text()
    tree = ast.parse(source)
    groups = _groups(source)
    out: list[str] = [f"{_markdown(inspect.cleandoc(ast.get_docstring(tree) or ''))}\n"]
    current = None
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("vx_"):
            continue
        group = max((g for g in groups if g[2] < node.lineno), key=lambda g: g[2])
        if group is not current:
            current = group
            out.append(f"### {group[0]}\n")
            if group[1]:
                out.append(f"{_markdown(group[1])}\n")
        markers = []
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call):
                markers += [kw.arg for kw in decorator.keywords if kw.arg]
        args = ", ".join(ast.unparse(arg) for arg in node.args.args)
        returns = ast.unparse(node.returns) if node.returns else "None"
        out.append(f"#### `{node.name}`\n")
        out.append(f"```python\n{node.name}({args}) -> {returns}\n```\n")
        if markers:
            out.append(f"*{', '.join(markers)}*\n")
        out.append(f"{_markdown(inspect.cleandoc(ast.get_docstring(node) or ''))}\n")
    return "\n".join(out)


def update(text: str, reference: str) -> str:
    """``text`` with its reference section replaced by ``reference``."""
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    return f"{text[:start]}\n\n{reference}\n{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vx.hookref", description=__doc__)
    parser.add_argument("file", type=Path, help="the Markdown file holding the section")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    text = args.file.read_text()
    updated = update(text, render())
    if args.check:
        if updated != text:
            sys.stderr.write(f"{args.file}: hook reference is out of date; run {parser.prog}\n")
            return 1
        return 0
    args.file.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
