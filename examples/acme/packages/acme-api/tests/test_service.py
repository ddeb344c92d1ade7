import json
import unittest

from acme_api import OrderService


class OrderServiceTest(unittest.TestCase):
    def test_create_and_render(self):
        service = OrderService(currency="USD")
        order = service.create([("Deluxe Widget", 2, 350), ("Gadget", 1, 1000)])
        self.assertEqual(
            json.loads(service.render(order)),
            {"id": 1, "items": ["deluxe-widget", "gadget"], "total": "17.00 USD"},
        )

    def test_ids_are_sequential(self):
        service = OrderService()
        self.assertEqual([service.create([("a", 1, 1)]).id for _ in range(3)], [1, 2, 3])

    def test_unknown_order(self):
        with self.assertRaisesRegex(LookupError, "no order 7"):
            OrderService().get(7)
