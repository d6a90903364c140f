"""The booking transition table and the status conditions, table-tested (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.notifications import NotificationKind
from shared.domain.refunds import RefundReason
from shared.domain.transitions import (
    LIVE_STATUSES,
    TABLE,
    Action,
    BookingStatus,
    CancelIntent,
    Facts,
    Guard,
    InvalidTransition,
    Notify,
    RefundDeposit,
    Rule,
    blocks_slot,
    check_table,
    decide,
    hold_over,
    initial_status,
    is_live,
    needs_slot_check,
)

S = BookingStatus
NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # the night Paris springs forward
PAST, FUTURE = NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)


# -- the conditions on a status -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expires_at", "blocks"),
    [
        (S.CONFIRMED, None, True),
        (S.CONFIRMED, PAST, True),  # a confirmed booking's old hold expiry is irrelevant
        (S.PENDING_PAYMENT, FUTURE, True),
        (S.PENDING_PAYMENT, NOW, False),  # expiresAt is the first instant it is free
        (S.PENDING_PAYMENT, PAST, False),
        (S.PENDING_PAYMENT, None, False),
        (S.EXPIRED, FUTURE, False),
        (S.CANCELLED, FUTURE, False),
    ],
)
def test_blocks_slot(status: S, expires_at: datetime | None, blocks: bool) -> None:
    assert blocks_slot(status, expires_at, NOW) is blocks


def test_live_is_what_the_exclusion_constraint_counts() -> None:
    assert LIVE_STATUSES == (S.PENDING_PAYMENT, S.CONFIRMED)
    assert [s for s in S if is_live(s)] == list(LIVE_STATUSES)
    # Whatever blocks a slot is live (the constraint is the fence behind availability).
    for status in S:
        for expires_at in (None, PAST, NOW, FUTURE):
            if blocks_slot(status, expires_at, NOW):
                assert is_live(status)


@pytest.mark.parametrize(
    ("expires_at", "over"), [(None, False), (PAST, True), (NOW, True), (FUTURE, False)]
)
def test_hold_over(expires_at: datetime | None, over: bool) -> None:
    assert hold_over(expires_at, NOW) is over


def test_a_new_booking_waits_for_its_deposit_unless_there_is_none() -> None:
    assert initial_status(deposit_required=True) == S.PENDING_PAYMENT
    assert initial_status(deposit_required=False) == S.CONFIRMED


# -- the table ----------------------------------------------------------------------------

CONFIRMED_MAILS = (Notify(NotificationKind.BOOKING_CONFIRMED),)
LATE_REFUND = (RefundDeposit(RefundReason.LATE_PAYMENT),)

# (action, status, facts beyond the status, expected target or None, expected intents)
CASES: list[tuple[Action, S, dict[str, object], S | None, tuple[object, ...]]] = [
    (Action.PAYMENT_SUCCEEDED, S.PENDING_PAYMENT, {}, S.CONFIRMED, CONFIRMED_MAILS),
    # Paid after the hold ran out but before anybody marked it: still ours (the
    # constraint kept the slot).
    (
        Action.PAYMENT_SUCCEEDED,
        S.PENDING_PAYMENT,
        {"expires_at": PAST},
        S.CONFIRMED,
        CONFIRMED_MAILS,
    ),
    (Action.PAYMENT_SUCCEEDED, S.CONFIRMED, {}, None, ()),
    # The late-payment decision.
    (Action.PAYMENT_SUCCEEDED, S.EXPIRED, {"slot_free": True}, S.CONFIRMED, CONFIRMED_MAILS),
    (Action.PAYMENT_SUCCEEDED, S.EXPIRED, {"slot_free": False}, S.EXPIRED, LATE_REFUND),
    (Action.PAYMENT_SUCCEEDED, S.CANCELLED, {"slot_free": True}, S.CONFIRMED, CONFIRMED_MAILS),
    (Action.PAYMENT_SUCCEEDED, S.CANCELLED, {"slot_free": False}, S.CANCELLED, LATE_REFUND),
    (
        Action.PAYMENT_FAILED,
        S.PENDING_PAYMENT,
        {},
        S.PENDING_PAYMENT,
        (Notify(NotificationKind.PAYMENT_FAILED),),
    ),
    (Action.PAYMENT_FAILED, S.CONFIRMED, {}, None, ()),
    (Action.PAYMENT_FAILED, S.EXPIRED, {}, None, ()),
    (Action.PAYMENT_FAILED, S.CANCELLED, {}, None, ()),
    (Action.INTENT_CANCELED, S.PENDING_PAYMENT, {}, S.CANCELLED, ()),
    (Action.INTENT_CANCELED, S.CONFIRMED, {}, None, ()),
    (Action.INTENT_CANCELED, S.EXPIRED, {}, None, ()),
    (
        Action.HOLD_EXPIRED,
        S.PENDING_PAYMENT,
        {"expires_at": PAST},
        S.EXPIRED,
        (Notify(NotificationKind.HOLD_EXPIRED), CancelIntent()),
    ),
    (
        Action.HOLD_EXPIRED,
        S.PENDING_PAYMENT,
        {"expires_at": NOW},
        S.EXPIRED,
        (Notify(NotificationKind.HOLD_EXPIRED), CancelIntent()),
    ),
    (Action.HOLD_EXPIRED, S.PENDING_PAYMENT, {"expires_at": FUTURE}, None, ()),
    (Action.HOLD_EXPIRED, S.CONFIRMED, {"expires_at": PAST}, None, ()),
    (Action.PROVIDER_FAILED, S.PENDING_PAYMENT, {}, S.CANCELLED, ()),
    (Action.PROVIDER_FAILED, S.CONFIRMED, {}, None, ()),
]


@pytest.mark.parametrize(("action", "status", "facts", "target", "then"), CASES)
def test_decide(
    action: Action,
    status: S,
    facts: dict[str, object],
    target: S | None,
    then: tuple[object, ...],
) -> None:
    rule = decide(action, Facts(status=status, now=NOW, **facts))  # type: ignore[arg-type]
    if target is None:
        assert rule is None
        return
    assert rule is not None
    assert (rule.action, rule.source, rule.target, rule.then) == (action, status, target, then)


def test_every_row_is_covered_by_a_case() -> None:
    decided = set()
    for action, status, facts, _, _ in CASES:
        rule = decide(action, Facts(status=status, now=NOW, **facts))  # type: ignore[arg-type]
        if rule is not None:
            decided.add(rule)
    assert decided == set(TABLE)


def test_the_table_is_unambiguous() -> None:
    assert check_table() == []
    doubled = [
        Rule(Action.PAYMENT_FAILED, S.PENDING_PAYMENT, S.CANCELLED),
        Rule(Action.PAYMENT_FAILED, S.PENDING_PAYMENT, S.EXPIRED, Guard.HOLD_OVER),
        Rule(Action.INTENT_CANCELED, S.EXPIRED, S.CANCELLED, Guard.SLOT_FREE),
        Rule(Action.INTENT_CANCELED, S.EXPIRED, S.CONFIRMED, Guard.SLOT_FREE),
    ]
    assert check_table(doubled) == [
        "PAYMENT_FAILED on PENDING_PAYMENT: ALWAYS beside other rows",
        "INTENT_CANCELED on EXPIRED: a guard appears twice",
    ]


def test_only_late_payments_need_the_slot_checked() -> None:
    needing = {(a, s) for a in Action for s in S if needs_slot_check(a, s)}
    assert needing == {
        (Action.PAYMENT_SUCCEEDED, S.EXPIRED),
        (Action.PAYMENT_SUCCEEDED, S.CANCELLED),
    }
    with pytest.raises(ValueError, match="slot_free"):
        decide(Action.PAYMENT_SUCCEEDED, Facts(status=S.EXPIRED, now=NOW))


def test_only_rows_that_make_a_booking_live_again_can_meet_the_constraint() -> None:
    live_again = {(r.action, r.source) for r in TABLE if r.makes_live}
    assert live_again == {
        (Action.PAYMENT_SUCCEEDED, S.EXPIRED),
        (Action.PAYMENT_SUCCEEDED, S.CANCELLED),
    }


def test_a_requested_action_without_a_row_is_refused() -> None:
    """How the lifecycle's actions (cancel, complete, ...) will behave: adding one is
    adding its rows and listing it as requested."""
    cancel = Action.INTENT_CANCELED  # stands in for a requested action
    table = [Rule(cancel, S.CONFIRMED, S.CANCELLED, then=LATE_REFUND)]
    requested = frozenset({cancel})
    rule = decide(cancel, Facts(S.CONFIRMED, NOW), table=table, requested=requested)
    assert rule is not None
    assert rule.target == S.CANCELLED
    with pytest.raises(InvalidTransition) as refused:
        decide(cancel, Facts(S.EXPIRED, NOW), table=table, requested=requested)
    assert (refused.value.action, refused.value.status) == (cancel, S.EXPIRED)
    # Facts reported to us are never refused: they change nothing.
    assert decide(cancel, Facts(S.EXPIRED, NOW), table=table) is None
