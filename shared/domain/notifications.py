"""What a client or an artist is told about a booking (one outbox row per recipient)."""

from __future__ import annotations

from enum import StrEnum


class NotificationKind(StrEnum):
    BOOKING_CONFIRMED = "BOOKING_CONFIRMED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    BOOKING_RESCHEDULED = "BOOKING_RESCHEDULED"
    REMINDER = "REMINDER"
    NO_SHOW_RECORDED = "NO_SHOW_RECORDED"
