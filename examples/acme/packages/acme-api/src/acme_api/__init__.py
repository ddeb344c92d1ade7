"""In-memory order service."""

from acme_api.service import OrderService

__all__ = ["OrderService"]
