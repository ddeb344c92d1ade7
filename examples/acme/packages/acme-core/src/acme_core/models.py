from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """A line of an order; prices are integer cents."""

    sku: str
    quantity: int
    unit_price: int

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise ValueError(f"{self.sku}: quantity must be at least 1, got {self.quantity}")
        if self.unit_price < 0:
            raise ValueError(f"{self.sku}: unit price must not be negative")

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


@dataclass
class Order:
    id: int
    items: list[Item] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(item.subtotal for item in self.items)
