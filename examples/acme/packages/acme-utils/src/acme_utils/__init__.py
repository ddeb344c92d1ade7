"""Formatting helpers."""

from acme_utils.text import format_money, slugify

__all__ = ["format_money", "slugify"]
