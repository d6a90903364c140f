"""Stripe's test cards and test PaymentMethods, and what paying with each does.

Both spellings Stripe documents work: a test PaymentMethod id (``pm_card_visa``,
``pm_card_chargeDeclined`` …, as a server passes ``payment_method``) and a raw test card
number (``4242 4242 4242 4242``, as Stripe.js sends ``payment_method_data[card][number]``
from a card form). A number that fails the Luhn check is ``incorrect_number``; any other
number that is not a test card is declined as a live card used in test mode, as at Stripe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devtools.stripe_emulator.errors import ApiError, missing


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a charge on the card does: ``code`` None succeeds, otherwise a card error."""

    code: str | None = None
    decline_code: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    brand: str
    payment_method: str  # the test PaymentMethod Stripe documents for this card
    outcome: Outcome

    @property
    def last4(self) -> str:
        return self.number[-4:]


SUCCEEDS = Outcome()
DECLINED = Outcome("card_declined", "generic_decline", "Your card was declined.")

# fmt: off
CARDS: tuple[Card, ...] = (
    Card("4242424242424242", "visa", "pm_card_visa", SUCCEEDS),
    Card("4000056655665556", "visa", "pm_card_visa_debit", SUCCEEDS),
    Card("5555555555554444", "mastercard", "pm_card_mastercard", SUCCEEDS),
    Card("378282246310005", "amex", "pm_card_amex", SUCCEEDS),
    Card("4000000000000002", "visa", "pm_card_chargeDeclined", DECLINED),
    Card("4000000000009995", "visa", "pm_card_chargeDeclinedInsufficientFunds",
             Outcome("card_declined", "insufficient_funds", "Your card has insufficient funds.")),
    Card("4000000000009987", "visa", "pm_card_chargeDeclinedLostCard",
             Outcome("card_declined", "lost_card", "Your card was declined.")),
    Card("4000000000009979", "visa", "pm_card_chargeDeclinedStolenCard",
             Outcome("card_declined", "stolen_card", "Your card was declined.")),
    Card("4000000000000069", "visa", "pm_card_chargeDeclinedExpiredCard",
             Outcome("expired_card", None, "Your card has expired.")),
    Card("4000000000000127", "visa", "pm_card_chargeDeclinedIncorrectCvc",
             Outcome("incorrect_cvc", None, "Your card's security code is incorrect.")),
    Card("4000000000000119", "visa", "pm_card_chargeDeclinedProcessingError",
             Outcome("processing_error", None,
                     "An error occurred while processing your card. Try again in a little bit.")),
)
# fmt: on
_BY_NUMBER = {card.number: card for card in CARDS}
_BY_PAYMENT_METHOD = {card.payment_method: card for card in CARDS}
# Stripe documents the declines under both names.
_ALIASES = {
    "pm_card_visa_chargeDeclined": "pm_card_chargeDeclined",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_visa_chargeDeclinedLostCard": "pm_card_chargeDeclinedLostCard",
    "pm_card_visa_chargeDeclinedStolenCard": "pm_card_chargeDeclinedStolenCard",
}


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def by_payment_method(pm_id: str) -> Card:
    card = _BY_PAYMENT_METHOD.get(_ALIASES.get(pm_id, pm_id))
    if card is None:
        raise missing("PaymentMethod", pm_id, "payment_method")
    return card


def by_number(raw: str, param: str = "payment_method_data[card][number]") -> Card:
    """The test card with this number (spaces and dashes allowed), or the card error
    Stripe answers for it."""
    number = re.sub(r"[\s-]", "", raw)
    if not re.fullmatch(r"\d{12,19}", number) or not luhn_ok(number):
        raise ApiError(402, "Your card number is incorrect.", "incorrect_number", param,
                       type="card_error")  # fmt: skip
    card = _BY_NUMBER.get(number)
    if card is None:
        live = Outcome(
            "card_declined",
            "test_mode_live_card",
            "Your card was declined. Your request was in test mode, but used a non test "
            "(live) card. For a list of valid test cards, visit: https://stripe.com/docs/testing.",
        )
        return Card(number, "visa", "", live)
    return card
