import pytest

from acme_core import Item, Order


def test_total_sums_subtotals():
    order = Order(1, [Item("widget", 2, 350), Item("gadget", 1, 1000)])
    assert order.total == 1700


def test_empty_order_costs_nothing():
    assert Order(2).total == 0


@pytest.mark.parametrize(("quantity", "price"), [(0, 100), (1, -1)])
def test_invalid_items_are_rejected(quantity, price):
    with pytest.raises(ValueError, match="widget"):
        Item("widget", quantity, price)
