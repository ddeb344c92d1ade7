"""Acme domain model."""

from acme_core.models import Item, Order

__all__ = ["Item", "Order"]
