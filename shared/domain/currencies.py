"""Which currencies a service may be priced in: the ISO 4217 codes a card can be charged in.

The codes come from ISO 4217 as `pycountry` ships it (kept up to date with each ISO
amendment, pinned in pyproject.toml), not from a list typed here. Taken out are the
codes that name no money a card is charged in, which Stripe never accepts:
- fund codes (ISO's "fund" flag: index units, next-day dollars, WIR money);
- the X codes — precious metals (XAU, XAG, XPT, XPD), bond-market units (XBA…XBD),
  special drawing rights and other units of account (XDR, XSU, XUA, XAD), the testing
  code XTS and "no currency" XXX — except the X codes of real circulating currencies
  (the CFA and CFP francs, the East Caribbean dollar, the Caribbean guilder).

What remains may still include a currency Stripe does not settle for a given account
(Stripe's own list is not published as a package); Stripe then refuses the deposit and
the booking answers PAYMENT_PROVIDER_ERROR, as for any other Stripe refusal.

Pure: pycountry's data is read from its package on first use, never over the network.
"""

from __future__ import annotations

from functools import cache

import pycountry

# ISO 4217 list one, entries with the fund flag set.
FUND_CODES = frozenset("bov che chw clf cou mxv usn uyi uyw".split())
# X codes that are money people pay with.
CIRCULATING_X_CODES = frozenset("xaf xcd xcg xof xpf".split())


def _chargeable(code: str) -> bool:
    if code in FUND_CODES:
        return False
    return not code.startswith("x") or code in CIRCULATING_X_CODES


@cache
def supported_currencies() -> frozenset[str]:
    """Lower-case ISO 4217 codes a deposit may be charged in (Stripe's spelling)."""
    codes = (currency.alpha_3.lower() for currency in pycountry.currencies)
    return frozenset(code for code in codes if _chargeable(code))


def is_supported(code: str) -> bool:
    return code.lower() in supported_currencies()
