"""Money as Decimal in major units; Stripe amounts as integers in the minor unit.

Never a float: a deposit of 19.99 EUR is Decimal("19.99") and 1999 cents.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 currencies whose minor unit is not 1/100 (stripe.com/docs/currencies).
# Amounts are stored as NUMERIC(14, 3): 11 digits before the point. Larger ones are refused
# before any arithmetic (quantizing 1e30 to cents exceeds Decimal's 28 digits).
MAX_AMOUNT = Decimal(10) ** 11  # excluded
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


class MoneyError(ValueError):
    """An amount that cannot be represented in its currency."""


def exponent(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def parse_amount(value: str, currency: str) -> Decimal:
    """A decimal string in major units, exact in the currency's minor unit."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError):
        raise MoneyError('must be a decimal string such as "50.00"') from None
    if not amount.is_finite():
        raise MoneyError("must be a finite decimal")
    if amount.is_signed():  # "-0" too: it would read back as "-0.00"
        raise MoneyError("must not be negative")
    if amount >= MAX_AMOUNT:
        raise MoneyError(f"must be less than {MAX_AMOUNT:f}")
    if amount != amount.quantize(quantum(currency), rounding=ROUND_HALF_UP):
        raise MoneyError(f"has more decimals than {currency.upper()} allows")
    return amount


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Stripe's integer amount: 50.00 EUR -> 5000, 5000 JPY -> 5000, 1.234 KWD -> 1234."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} is not a whole number of {currency.upper()} minor units")
    return int(scaled)


def from_minor_units(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency)).quantize(quantum(currency))


def format_amount(amount: Decimal, currency: str) -> str:
    """The API's string form: "50.00" for EUR, "5000" for JPY."""
    return str(amount.quantize(quantum(currency), rounding=ROUND_HALF_UP))


def platform_fee(amount_minor: int, fee_bps: int) -> int:
    """Application fee in minor units, rounded half up: basis points of the deposit."""
    fee = (Decimal(amount_minor) * fee_bps / Decimal(10_000)).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return int(fee)
