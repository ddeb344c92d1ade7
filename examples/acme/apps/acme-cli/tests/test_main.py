import json

import acme_core
import pytest

from acme_cli.main import main


def test_quote(capsys):
    assert main(["Deluxe Widget:2:350", "gadget:1:1000", "--currency", "USD"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == "17.00 USD"


def test_bad_line_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["widget"])
    assert exc.value.code == 2
    assert "NAME:QUANTITY:CENTS" in capsys.readouterr().err


def test_dependencies_come_from_built_archives():
    assert ".zip" in acme_core.__file__
