"""Deposit amounts: Decimal in major units, integers in the currency's minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.domain.money import (
    MoneyError,
    format_amount,
    from_minor_units,
    parse_amount,
    platform_fee,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("50.00", "eur", 5000),
        ("19.99", "usd", 1999),
        ("0.10", "EUR", 10),
        ("5000", "jpy", 5000),
        ("5000", "krw", 5000),
        ("1.234", "kwd", 1234),
        ("0", "eur", 0),
    ],
)
def test_minor_units(amount, currency, minor):
    value = parse_amount(amount, currency)
    assert to_minor_units(value, currency) == minor
    assert from_minor_units(minor, currency) == value


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("50.5", "jpy"),
        ("1.001", "eur"),
        ("-1", "eur"),
        ("abc", "eur"),
        ("NaN", "eur"),
        ("Infinity", "eur"),
        # What NUMERIC(14, 3) cannot hold, and what Decimal cannot quantize.
        ("-0", "eur"),
        ("100000000000", "jpy"),
        ("1e30", "eur"),
        ("1e999999999999", "kwd"),
    ],
)
def test_amounts_that_do_not_fit_the_currency(amount, currency):
    with pytest.raises(MoneyError):
        parse_amount(amount, currency)


def test_the_largest_amounts():
    assert parse_amount("99999999999.99", "eur") == Decimal("99999999999.99")
    assert parse_amount("99999999999", "jpy") == Decimal("99999999999")


def test_format_follows_the_currency():
    assert format_amount(Decimal("50"), "eur") == "50.00"
    assert format_amount(Decimal("5000"), "jpy") == "5000"
    assert format_amount(Decimal("1.5"), "kwd") == "1.500"


@pytest.mark.parametrize(
    ("minor", "bps", "fee"), [(5000, 0, 0), (5000, 1000, 500), (1999, 250, 50), (5, 1000, 1)]
)
def test_platform_fee_rounds_half_up(minor, bps, fee):
    assert platform_fee(minor, bps) == fee


def test_no_float_sneaks_in():
    # 0.1 + 0.2 style errors would show up here if floats were involved.
    assert to_minor_units(parse_amount("0.10", "eur") + parse_amount("0.20", "eur"), "eur") == 30
