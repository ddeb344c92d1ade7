"""A tiny stdlib-only linter: syntax errors, long lines, trailing whitespace, tabs.

Usage: python lint.py DIR [DIR ...]   (exit code 1 when a problem is found)
"""

import sys
from pathlib import Path

MAX_LINE = 100


def check(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno}: syntax error: {exc.msg}"]
    problems = []
    for number, line in enumerate(source.splitlines(), start=1):
        if len(line) > MAX_LINE:
            problems.append(f"{path}:{number}: line longer than {MAX_LINE} characters")
        if line != line.rstrip():
            problems.append(f"{path}:{number}: trailing whitespace")
        if "\t" in line:
            problems.append(f"{path}:{number}: tab character")
    if source and not source.endswith("\n"):
        problems.append(f"{path}: no newline at end of file")
    return problems


def main(directories: list[str]) -> int:
    files = sorted(p for d in directories for p in Path(d).rglob("*.py"))
    problems = [problem for path in files for problem in check(path)]
    for problem in problems:
        print(problem)
    print(f"lint: {len(files)} file(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["."]))
