import json

import pytest

from acme_api import OrderService


def test_create_and_render():
    service = OrderService(currency="USD")
    order = service.create([("Deluxe Widget", 2, 350), ("Gadget", 1, 1000)])
    assert json.loads(service.render(order)) == {
        "id": 1,
        "items": ["deluxe-widget", "gadget"],
        "total": "17.00 USD",
    }


def test_ids_are_sequential():
    service = OrderService()
    assert [service.create([("a", 1, 1)]).id for _ in range(3)] == [1, 2, 3]


def test_unknown_order():
    with pytest.raises(LookupError, match="no order 7"):
        OrderService().get(7)
