"""Build the project in the current directory into dist/<name>-<version>.zip.

The archive holds the packages under src/ and is reproducible (sorted entries, fixed
timestamps), so the same sources always give the same bytes. Python can import
straight from it: put the .zip on sys.path.
"""

import re
import sys
import tomllib
import zipfile
from pathlib import Path


def main() -> int:
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    target = Path("dist") / f"{name}-{project['version']}.zip"
    target.parent.mkdir(exist_ok=True)
    for old in target.parent.glob("*.zip"):
        old.unlink()
    files = sorted(p for p in Path("src").rglob("*") if p.is_file() and p.suffix == ".py")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to("src").as_posix(), (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    print(f"built {target} ({len(files)} file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
