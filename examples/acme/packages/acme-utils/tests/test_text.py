import unittest

from acme_utils import format_money, slugify


class TextTest(unittest.TestCase):
    def test_format_money(self):
        cases = [(0, "0.00 EUR"), (5, "0.05 EUR"), (123456, "1,234.56 EUR"), (-250, "-2.50 EUR")]
        for cents, expected in cases:
            with self.subTest(cents=cents):
                self.assertEqual(format_money(cents), expected)

    def test_slugify(self):
        self.assertEqual(slugify("  Deluxe Widget! (v2) "), "deluxe-widget-v2")
