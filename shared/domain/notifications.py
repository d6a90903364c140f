"""What a client or an artist is told about a booking (one outbox row per recipient)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class NotificationKind(StrEnum):
    BOOKING_CONFIRMED = "BOOKING_CONFIRMED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    BOOKING_RESCHEDULED = "BOOKING_RESCHEDULED"
    REMINDER = "REMINDER"
    NO_SHOW_RECORDED = "NO_SHOW_RECORDED"


RecipientRole = Literal["client", "artist"]

# Who hears about what. Order is the order rows are added (and ids returned).
RECIPIENT_ROLES: dict[NotificationKind, tuple[RecipientRole, ...]] = {
    NotificationKind.BOOKING_CONFIRMED: ("client", "artist"),
    NotificationKind.PAYMENT_FAILED: ("client",),
    NotificationKind.HOLD_EXPIRED: ("client",),
    NotificationKind.PAYMENT_REFUNDED: ("client",),
    NotificationKind.BOOKING_CANCELLED: ("client", "artist"),
    NotificationKind.BOOKING_RESCHEDULED: ("client", "artist"),
    NotificationKind.REMINDER: ("client",),
    NotificationKind.NO_SHOW_RECORDED: ("client",),
}
