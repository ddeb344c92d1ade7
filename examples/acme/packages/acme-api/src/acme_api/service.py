import json
import os

from acme_core import Item, Order
from acme_utils import format_money, slugify


class OrderService:
    def __init__(self, currency: str | None = None) -> None:
        self.currency = currency or os.environ.get("ACME_CURRENCY", "EUR")
        self._orders: dict[int, Order] = {}

    def create(self, lines: list[tuple[str, int, int]]) -> Order:
        """Create an order from ``(name, quantity, unit price in cents)`` lines."""
        order = Order(len(self._orders) + 1, [Item(slugify(n), q, p) for n, q, p in lines])
        self._orders[order.id] = order
        return order

    def get(self, order_id: int) -> Order:
        try:
            return self._orders[order_id]
        except KeyError:
            raise LookupError(f"no order {order_id}") from None

    def render(self, order: Order) -> str:
        return json.dumps(
            {
                "id": order.id,
                "items": [item.sku for item in order.items],
                "total": format_money(order.total, self.currency),
            }
        )
