import unittest

from acme_core import Item, Order


class OrderTest(unittest.TestCase):
    def test_total_sums_subtotals(self):
        order = Order(1, [Item("widget", 2, 350), Item("gadget", 1, 1000)])
        self.assertEqual(order.total, 1700)

    def test_empty_order_costs_nothing(self):
        self.assertEqual(Order(2).total, 0)

    def test_invalid_items_are_rejected(self):
        for quantity, price in [(0, 100), (1, -1)]:
            with self.subTest(quantity=quantity, price=price):
                with self.assertRaisesRegex(ValueError, "widget"):
                    Item("widget", quantity, price)
