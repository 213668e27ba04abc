"""Money is Decimal dollars in the database and integer cents on the wire; never float."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> int:
    if isinstance(amount, float):
        raise TypeError("money must not be a float")
    return int((Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP) * 100).to_integral_value())


def from_cents(cents: int) -> Decimal:
    if not isinstance(cents, int) or isinstance(cents, bool):
        raise TypeError("cents must be an integer")
    return (Decimal(cents) / 100).quantize(CENT)


def discounted(amount: Decimal, percent: int) -> Decimal:
    """The price after a whole-number percent discount, rounded to the cent."""
    return (Decimal(amount) * (Decimal(100) - Decimal(percent)) / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)


def format_usd(amount: Decimal) -> str:
    amount = Decimal(amount).quantize(CENT)
    if amount == amount.to_integral_value():
        return f"${amount:,.0f}"
    return f"${amount:,.2f}"


def format_money(amount: Decimal, currency: str) -> str:
    """"$495" for dollars, "1,250.00 GTQ" for any other currency."""
    if currency.upper() == "USD":
        return format_usd(amount)
    return f"{Decimal(amount).quantize(CENT):,.2f} {currency.upper()}"
