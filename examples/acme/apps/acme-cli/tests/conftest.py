"""Import acme-cli's dependencies from their built archives (dist/*.zip), not their sources:
this tests what `vx run build` produced. vx runs `^build` before this project's tests."""

import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("VX_WORKSPACE_ROOT") or Path(__file__).resolve().parents[3])

for name in ("acme-core", "acme-utils", "acme-api"):
    archives = sorted((ROOT / "packages" / name / "dist").glob("*.zip"))
    if not archives:
        raise RuntimeError(f"{name} is not built; run: vx run acme-cli#test (it builds it first)")
    sys.path.insert(0, str(archives[-1]))
