import argparse

from acme_api import OrderService


def parse_line(text: str) -> tuple[str, int, int]:
    """``"widget:2:350"`` -> ``("widget", 2, 350)``."""
    try:
        name, quantity, price = text.rsplit(":", 2)
        return name, int(quantity), int(price)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:QUANTITY:CENTS, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acme", description="Quote an order.")
    parser.add_argument("lines", nargs="+", type=parse_line, metavar="NAME:QUANTITY:CENTS")
    parser.add_argument("--currency", default=None)
    args = parser.parse_args(argv)
    service = OrderService(currency=args.currency)
    print(service.render(service.create(args.lines)))
    return 0
