"""The booking transition table, the deposit table and the status conditions, table-tested
(pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import deposits
from shared.domain.deposits import CancelledBy, DepositMove, DepositStatus
from shared.domain.notifications import NotificationKind
from shared.domain.policy import DepositPolicy, PolicyReason
from shared.domain.refunds import RefundReason
from shared.domain.transitions import (
    LIVE_STATUSES,
    REQUESTED,
    TABLE,
    Action,
    BookingStatus,
    CancelIntent,
    Deposit,
    Facts,
    Guard,
    InvalidTransition,
    Notify,
    PolicyRefused,
    RefundDeposit,
    Rule,
    blocks_slot,
    check_table,
    decide,
    hold_over,
    initial_status,
    is_live,
    needs_slot_check,
    rules_for,
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

CONFIRMED_MAIL = Notify(NotificationKind.BOOKING_CONFIRMED)
CANCELLED_MAIL = Notify(NotificationKind.BOOKING_CANCELLED)
RECEIVED = Deposit(DepositMove.RECEIVED)
FORFEIT = Deposit(DepositMove.FORFEIT)
LATE_REFUND = (RECEIVED, RefundDeposit(RefundReason.LATE_PAYMENT))

WINDOW_48 = DepositPolicy(refund_window_hours=48)
IN_3_DAYS = NOW + timedelta(days=3)
IN_48_H = NOW + timedelta(hours=48)
IN_47_H = NOW + timedelta(hours=47, minutes=59, seconds=59)
STARTED_1_H_AGO = NOW - timedelta(hours=1)


@dataclass(frozen=True)
class Refused:
    reason: PolicyReason


INVALID = "INVALID_STATE"
# What decide() answers: the target and intents of the row, None (no row, nothing
# changes), INVALID (a requested action refused by the status) or a policy refusal.
Expected = tuple[S, tuple[object, ...]] | Refused | str | None

# (action, status, facts beyond the status, expected)
Case = tuple[Action, S, Mapping[str, object], Expected]


def _staff_cases() -> list[Case]:
    """The artist, the operator, a leave: refund as asked, whenever; the client is told of
    a hold ended for them too."""
    cases: list[Case] = []
    for action, reason in (
        (Action.ARTIST_CANCEL, RefundReason.ARTIST_CANCEL),
        (Action.OPERATOR_CANCEL, RefundReason.OPERATOR_CANCEL),
        (Action.LEAVE_CANCEL, RefundReason.LEAVE_CONFLICT),
    ):
        for asked in (True, False):
            cases.append(
                (
                    action,
                    S.PENDING_PAYMENT,
                    {"refund_asked": asked},
                    (S.CANCELLED, (CancelIntent(), CANCELLED_MAIL)),
                )
            )
        cases += [
            (
                action,
                S.CONFIRMED,
                {"refund_asked": True, "start": STARTED_1_H_AGO},
                (S.CANCELLED, (RefundDeposit(reason), CANCELLED_MAIL)),
            ),
            (
                action,
                S.CONFIRMED,
                {"refund_asked": False, "start": IN_3_DAYS},
                (S.CANCELLED, (FORFEIT, CANCELLED_MAIL)),
            ),
        ]
        cases += [
            (action, status, {"refund_asked": True}, INVALID)
            for status in (S.EXPIRED, S.CANCELLED, S.COMPLETED, S.NO_SHOW)
        ]
    return cases


CASES: list[Case] = [
    (Action.PAYMENT_SUCCEEDED, S.PENDING_PAYMENT, {}, (S.CONFIRMED, (RECEIVED, CONFIRMED_MAIL))),
    # Paid after the hold ran out but before anybody marked it: still ours (the
    # constraint kept the slot).
    (
        Action.PAYMENT_SUCCEEDED,
        S.PENDING_PAYMENT,
        {"expires_at": PAST},
        (S.CONFIRMED, (RECEIVED, CONFIRMED_MAIL)),
    ),
    (Action.PAYMENT_SUCCEEDED, S.CONFIRMED, {}, None),
    (Action.PAYMENT_SUCCEEDED, S.COMPLETED, {}, None),
    (Action.PAYMENT_SUCCEEDED, S.NO_SHOW, {}, None),
    # The late-payment decision: an expired hold comes back if its slot is free...
    (
        Action.PAYMENT_SUCCEEDED,
        S.EXPIRED,
        {"slot_free": True},
        (S.CONFIRMED, (RECEIVED, CONFIRMED_MAIL)),
    ),
    (Action.PAYMENT_SUCCEEDED, S.EXPIRED, {"slot_free": False}, (S.EXPIRED, LATE_REFUND)),
    # ... a cancelled booking never does: the payment goes back, slot free or not.
    (Action.PAYMENT_SUCCEEDED, S.CANCELLED, {}, (S.CANCELLED, LATE_REFUND)),
    (Action.PAYMENT_SUCCEEDED, S.CANCELLED, {"slot_free": True}, (S.CANCELLED, LATE_REFUND)),
    (
        Action.PAYMENT_FAILED,
        S.PENDING_PAYMENT,
        {},
        (S.PENDING_PAYMENT, (Notify(NotificationKind.PAYMENT_FAILED),)),
    ),
    (Action.PAYMENT_FAILED, S.CONFIRMED, {}, None),
    (Action.PAYMENT_FAILED, S.EXPIRED, {}, None),
    (Action.PAYMENT_FAILED, S.CANCELLED, {}, None),
    (Action.INTENT_CANCELED, S.PENDING_PAYMENT, {}, (S.CANCELLED, ())),
    (Action.INTENT_CANCELED, S.CONFIRMED, {}, None),
    (Action.INTENT_CANCELED, S.EXPIRED, {}, None),
    (
        Action.HOLD_EXPIRED,
        S.PENDING_PAYMENT,
        {"expires_at": PAST},
        (S.EXPIRED, (Notify(NotificationKind.HOLD_EXPIRED), CancelIntent())),
    ),
    (
        Action.HOLD_EXPIRED,
        S.PENDING_PAYMENT,
        {"expires_at": NOW},
        (S.EXPIRED, (Notify(NotificationKind.HOLD_EXPIRED), CancelIntent())),
    ),
    (Action.HOLD_EXPIRED, S.PENDING_PAYMENT, {"expires_at": FUTURE}, None),
    (Action.HOLD_EXPIRED, S.CONFIRMED, {"expires_at": PAST}, None),
    (Action.PROVIDER_FAILED, S.PENDING_PAYMENT, {}, (S.CANCELLED, ())),
    (Action.PROVIDER_FAILED, S.CONFIRMED, {}, None),
    # -- the client cancels
    # An unpaid hold: whenever, no mail (nothing was confirmed), its intent cancelled.
    (
        Action.CLIENT_CANCEL,
        S.PENDING_PAYMENT,
        {"start": IN_3_DAYS},
        (S.CANCELLED, (CancelIntent(),)),
    ),
    (
        Action.CLIENT_CANCEL,
        S.PENDING_PAYMENT,
        {"start": STARTED_1_H_AGO},
        (S.CANCELLED, (CancelIntent(),)),
    ),
    # Confirmed: refunded inside the window (exactly 48 h counts), else kept.
    (
        Action.CLIENT_CANCEL,
        S.CONFIRMED,
        {"start": IN_3_DAYS, "policy": WINDOW_48},
        (S.CANCELLED, (RefundDeposit(RefundReason.CLIENT_CANCEL), CANCELLED_MAIL)),
    ),
    (
        Action.CLIENT_CANCEL,
        S.CONFIRMED,
        {"start": IN_48_H, "policy": WINDOW_48},
        (S.CANCELLED, (RefundDeposit(RefundReason.CLIENT_CANCEL), CANCELLED_MAIL)),
    ),
    (
        Action.CLIENT_CANCEL,
        S.CONFIRMED,
        {"start": IN_47_H, "policy": WINDOW_48},
        (S.CANCELLED, (FORFEIT, CANCELLED_MAIL)),
    ),
    # The default policy never refunds a client's cancel.
    (
        Action.CLIENT_CANCEL,
        S.CONFIRMED,
        {"start": IN_3_DAYS},
        (S.CANCELLED, (FORFEIT, CANCELLED_MAIL)),
    ),
    (
        Action.CLIENT_CANCEL,
        S.CONFIRMED,
        {"start": STARTED_1_H_AGO, "policy": WINDOW_48},
        Refused(PolicyReason.STARTED),
    ),
    (Action.CLIENT_CANCEL, S.CONFIRMED, {"start": NOW}, Refused(PolicyReason.STARTED)),
    *[
        (Action.CLIENT_CANCEL, status, {"start": IN_3_DAYS}, INVALID)
        for status in (S.EXPIRED, S.CANCELLED, S.COMPLETED, S.NO_SHOW)
    ],
    *_staff_cases(),
    # -- closing a booking: once it started (its start instant included).
    (Action.COMPLETE, S.CONFIRMED, {"start": STARTED_1_H_AGO}, (S.COMPLETED, ())),
    (Action.COMPLETE, S.CONFIRMED, {"start": NOW}, (S.COMPLETED, ())),
    (Action.COMPLETE, S.CONFIRMED, {"start": FUTURE}, Refused(PolicyReason.NOT_STARTED)),
    (
        Action.NO_SHOW,
        S.CONFIRMED,
        {"start": STARTED_1_H_AGO},
        (S.NO_SHOW, (FORFEIT, Notify(NotificationKind.NO_SHOW_RECORDED))),
    ),
    (Action.NO_SHOW, S.CONFIRMED, {"start": FUTURE}, Refused(PolicyReason.NOT_STARTED)),
    *[
        (action, status, {"start": STARTED_1_H_AGO}, INVALID)
        for action in (Action.COMPLETE, Action.NO_SHOW)
        for status in (S.PENDING_PAYMENT, S.EXPIRED, S.CANCELLED, S.COMPLETED, S.NO_SHOW)
    ],
    # -- the client moves a confirmed booking: with notice, a limited number of times.
    (
        Action.RESCHEDULE,
        S.CONFIRMED,
        {"start": IN_48_H},
        (S.CONFIRMED, (Notify(NotificationKind.BOOKING_RESCHEDULED),)),
    ),
    (
        Action.RESCHEDULE,
        S.CONFIRMED,
        {"start": IN_47_H},
        Refused(PolicyReason.TOO_LATE_TO_RESCHEDULE),
    ),
    (
        Action.RESCHEDULE,
        S.CONFIRMED,
        {"start": IN_3_DAYS, "reschedule_count": 1},
        Refused(PolicyReason.RESCHEDULE_LIMIT),
    ),
    (
        Action.RESCHEDULE,
        S.CONFIRMED,
        {"start": IN_3_DAYS, "reschedule_count": 1, "policy": DepositPolicy(max_reschedules=2)},
        (S.CONFIRMED, (Notify(NotificationKind.BOOKING_RESCHEDULED),)),
    ),
    *[
        (Action.RESCHEDULE, status, {"start": IN_3_DAYS}, INVALID)
        for status in (S.PENDING_PAYMENT, S.EXPIRED, S.CANCELLED, S.COMPLETED, S.NO_SHOW)
    ],
]


def _decide(action: Action, status: S, facts: Mapping[str, object]) -> Rule | None:
    return decide(action, Facts(status=status, now=NOW, **facts))  # type: ignore[arg-type]


@pytest.mark.parametrize(("action", "status", "facts", "expected"), CASES)
def test_decide(action: Action, status: S, facts: Mapping[str, object], expected: Expected) -> None:
    if expected == INVALID:
        with pytest.raises(InvalidTransition) as invalid:
            _decide(action, status, facts)
        assert (invalid.value.action, invalid.value.status) == (action, status)
        return
    if isinstance(expected, Refused):
        with pytest.raises(PolicyRefused) as refused:
            _decide(action, status, facts)
        assert refused.value.reason == expected.reason
        return
    rule = _decide(action, status, facts)
    if expected is None:
        assert rule is None
        return
    assert rule is not None
    assert isinstance(expected, tuple)
    target, then = expected
    assert (rule.action, rule.source, rule.target, rule.then) == (action, status, target, then)


def test_every_row_is_covered_by_a_case() -> None:
    decided = set()
    for action, status, facts, expected in CASES:
        if isinstance(expected, tuple):
            rule = _decide(action, status, facts)
            assert rule is not None
            decided.add(rule)
    assert decided == set(TABLE)


def test_every_requested_action_is_refused_in_every_status_without_a_row() -> None:
    """INVALID_STATE, never a silent no-op, for what someone asks for."""
    for action in REQUESTED:
        for status in S:
            if not rules_for(action, status):
                with pytest.raises(InvalidTransition):
                    decide(action, Facts(status, NOW, start=IN_3_DAYS, refund_asked=True))
    assert {a.name for a in REQUESTED} == {
        "CLIENT_CANCEL",
        "ARTIST_CANCEL",
        "OPERATOR_CANCEL",
        "LEAVE_CANCEL",
        "COMPLETE",
        "NO_SHOW",
        "RESCHEDULE",
    }


@pytest.mark.parametrize(
    ("action", "by"),
    [
        (Action.CLIENT_CANCEL, CancelledBy.CLIENT),
        (Action.ARTIST_CANCEL, CancelledBy.ARTIST),
        (Action.OPERATOR_CANCEL, CancelledBy.OPERATOR),
        (Action.LEAVE_CANCEL, CancelledBy.ARTIST),
        (Action.INTENT_CANCELED, CancelledBy.SYSTEM),
        (Action.PROVIDER_FAILED, CancelledBy.SYSTEM),
    ],
)
def test_who_cancelled(action: Action, by: CancelledBy) -> None:
    rows = [r for r in TABLE if r.action == action and r.target == S.CANCELLED]
    assert rows
    assert {r.cancelled_by for r in rows if r.changes_status} == {by}


def test_only_rows_that_cancel_say_who_cancelled() -> None:
    for rule in TABLE:
        cancels = rule.changes_status and rule.target == S.CANCELLED
        assert (rule.cancelled_by is not None) is cancels, rule


def test_a_deposit_goes_back_or_is_kept_only_when_the_booking_ends() -> None:
    """Only a row that ends the booking (or a late payment on an ended one) refunds or
    keeps a deposit: a live booking always keeps its paid deposit."""
    for rule in TABLE:
        moves = [i for i in rule.then if isinstance(i, RefundDeposit | Deposit)]
        if any(isinstance(i, RefundDeposit) or i == FORFEIT for i in moves):
            assert rule.target in (S.CANCELLED, S.EXPIRED, S.NO_SHOW), rule


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


def test_only_late_payments_on_expired_holds_need_the_slot_checked() -> None:
    needing = {(a, s) for a in Action for s in S if needs_slot_check(a, s)}
    assert needing == {(Action.PAYMENT_SUCCEEDED, S.EXPIRED)}
    with pytest.raises(ValueError, match="slot_free"):
        decide(Action.PAYMENT_SUCCEEDED, Facts(status=S.EXPIRED, now=NOW))


def test_guards_and_checks_name_the_facts_they_miss() -> None:
    with pytest.raises(ValueError, match="refund_asked"):
        decide(Action.ARTIST_CANCEL, Facts(S.CONFIRMED, NOW, start=IN_3_DAYS))
    with pytest.raises(ValueError, match="start"):
        decide(Action.CLIENT_CANCEL, Facts(S.CONFIRMED, NOW))
    with pytest.raises(ValueError, match="start"):
        decide(Action.COMPLETE, Facts(S.CONFIRMED, NOW))


def test_only_an_expired_hold_paid_late_can_meet_the_constraint() -> None:
    live_again = {(r.action, r.source) for r in TABLE if r.makes_live}
    assert live_again == {(Action.PAYMENT_SUCCEEDED, S.EXPIRED)}


def test_a_requested_action_without_a_row_is_refused() -> None:
    cancel = Action.INTENT_CANCELED  # a reported fact, made requested for this table
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


# -- the deposit ----------------------------------------------------------------------------

D = DepositStatus

# Every (move, status) pair: only these change anything.
DEPOSIT_CHANGES = {
    (DepositMove.RECEIVED, D.UNPAID): D.PAID,
    (DepositMove.REFUND, D.PAID): D.REFUND_PENDING,
    (DepositMove.FORFEIT, D.PAID): D.FORFEITED,
    # What a Dashboard refund left of the deposit goes back, or is kept, like a paid one.
    (DepositMove.REFUND, D.PARTIALLY_REFUNDED): D.REFUND_PENDING,
    (DepositMove.FORFEIT, D.PARTIALLY_REFUNDED): D.FORFEITED,
}


@pytest.mark.parametrize("move", list(DepositMove))
@pytest.mark.parametrize("status", list(D))
def test_deposit_table(move: DepositMove, status: D) -> None:
    expected = DEPOSIT_CHANGES.get((move, status))
    assert deposits.changes(move, status) is (expected is not None)
    assert deposits.after(move, status) == (expected or status)


def test_a_deposit_is_refunded_or_kept_once() -> None:
    """A payment reported twice, a cancel after a forfeit, a refund after a refund: the
    second move changes nothing (and so owes nothing)."""
    paid = deposits.after(DepositMove.RECEIVED, D.UNPAID)
    assert deposits.after(DepositMove.RECEIVED, paid) == paid
    for first in (DepositMove.REFUND, DepositMove.FORFEIT):
        settled = deposits.after(first, paid)
        for second in DepositMove:
            assert not deposits.changes(second, settled)
