"""Which currencies a service may be priced in: ISO 4217 (from pycountry) minus what no
card is charged in."""

from __future__ import annotations

import pytest

from shared.domain.currencies import (
    CIRCULATING_X_CODES,
    FUND_CODES,
    is_supported,
    supported_currencies,
)
from shared.domain.money import THREE_DECIMAL, ZERO_DECIMAL


@pytest.mark.parametrize(
    "code",
    ["eur", "EUR", "usd", "gbp", "jpy", "krw", "kwd", "chf", "xaf", "xof", "xpf", "xcd", "brl"],
)
def test_real_currencies_are_supported(code):
    assert is_supported(code)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("xyz", "not ISO 4217"),
        ("abc", "not ISO 4217"),
        ("eu", "not a code"),
        ("", "not a code"),
        ("xau", "gold"),
        ("xag", "silver"),
        ("xpt", "platinum"),
        ("xpd", "palladium"),
        ("xts", "testing code"),
        ("xxx", "no currency"),
        ("xdr", "special drawing rights"),
        ("xba", "bond-market unit"),
        ("xsu", "sucre (unit of account)"),
        ("xua", "ADB unit of account"),
        ("bov", "fund"),
        ("clf", "fund"),
        ("usn", "fund"),
        ("che", "fund"),
        ("uyi", "fund"),
    ],
)
def test_what_no_card_is_charged_in_is_refused(code, why):
    assert not is_supported(code), why


def test_the_list_comes_from_iso_4217():
    codes = supported_currencies()
    # ISO 4217 has about 180 active codes; after the exclusions, well over a hundred
    # remain (Stripe takes about 135).
    assert 130 <= len(codes) <= 180
    assert all(len(c) == 3 and c.isalpha() and c.islower() for c in codes)
    assert not codes & FUND_CODES
    assert {c for c in codes if c.startswith("x")} <= CIRCULATING_X_CODES


def test_every_currency_with_special_minor_units_is_a_supported_one():
    """The money rules' zero- and three-decimal lists name real currencies: a typo there
    would price a currency in the wrong unit."""
    assert supported_currencies() >= ZERO_DECIMAL | THREE_DECIMAL
    assert supported_currencies() >= CIRCULATING_X_CODES
