import pytest

from acme_utils import format_money, slugify


@pytest.mark.parametrize(
    ("cents", "expected"),
    [(0, "0.00 EUR"), (5, "0.05 EUR"), (123456, "1,234.56 EUR"), (-250, "-2.50 EUR")],
)
def test_format_money(cents, expected):
    assert format_money(cents) == expected


def test_slugify():
    assert slugify("  Deluxe Widget! (v2) ") == "deluxe-widget-v2"
