"""acme-cli's dependencies are imported from their built archives (dist/*.zip), not their
sources: this tests what `vx run build` produced. vx runs `^build` before this project's
tests."""

import contextlib
import io
import json
import os
import sys
import unittest
from pathlib import Path

ROOT = Path(os.environ.get("VX_WORKSPACE_ROOT") or Path(__file__).resolve().parents[3])

for name in ("acme-core", "acme-utils", "acme-api"):
    archives = sorted((ROOT / "packages" / name / "dist").glob("*.zip"))
    if not archives:
        raise RuntimeError(f"{name} is not built; run: vx run acme-cli#test (it builds it first)")
    sys.path.insert(0, str(archives[-1]))

import acme_core  # noqa: E402 (after the archives are on sys.path)

from acme_cli.main import main  # noqa: E402


class MainTest(unittest.TestCase):
    def test_quote(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["Deluxe Widget:2:350", "gadget:1:1000", "--currency", "USD"])
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out.getvalue())["total"], "17.00 USD")

    def test_bad_line_is_a_usage_error(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as exc:
            main(["widget"])
        self.assertEqual(exc.exception.code, 2)
        self.assertIn("NAME:QUANTITY:CENTS", err.getvalue())

    def test_dependencies_come_from_built_archives(self):
        self.assertIn(".zip", acme_core.__file__)
