import re

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """``"Deluxe Widget!"`` -> ``"deluxe-widget"``."""
    return _NOT_WORD.sub("-", text.lower()).strip("-")


def format_money(cents: int, currency: str = "EUR") -> str:
    """``123456`` -> ``"1,234.56 EUR"``."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units:,}.{rest:02d} {currency}"
