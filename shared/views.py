"""Rows rendered as the contract's JSON (camelCase, UTC `Z` timestamps, money strings)."""

from __future__ import annotations

from typing import Any

from shared.adapters.models import (
    Artist,
    Booking,
    Client,
    Leave,
    Notification,
    Service,
    StripeTransaction,
    WorkingHours,
)
from shared.domain.money import format_amount, from_minor_units
from shared.domain.timeutil import iso_utc


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def client_json(client: Client) -> dict[str, Any]:
    return {
        "id": str(client.id),
        "email": client.email,
        "name": client.name,
        "createdAt": iso_utc(client.created_at),
    }


def artist_json(artist: Artist) -> dict[str, Any]:
    return {
        "id": str(artist.id),
        "name": artist.name,
        "email": artist.email,
        "timezone": artist.timezone,
        "stripeAccountId": artist.stripe_account_id,
        "chargesEnabled": artist.charges_enabled,
        "bufferMin": artist.buffer_min,
        "minNoticeMin": artist.min_notice_min,
        "maxAdvanceDays": artist.max_advance_days,
        "createdAt": iso_utc(artist.created_at),
    }


def service_json(service: Service) -> dict[str, Any]:
    return {
        "id": str(service.id),
        "artistId": str(service.artist_id),
        "name": service.name,
        "durationMin": service.duration_min,
        "price": format_amount(service.price, service.currency),
        "depositAmount": format_amount(service.deposit_amount, service.currency),
        "currency": service.currency,
        "createdAt": iso_utc(service.created_at),
    }


def working_hours_json(hours: WorkingHours) -> dict[str, Any]:
    return {
        "id": str(hours.id),
        "dayOfWeek": hours.day_of_week,
        "startTime": _hhmm(hours.start_minute),
        "endTime": _hhmm(hours.end_minute),
    }


def leave_json(leave: Leave) -> dict[str, Any]:
    return {
        "id": str(leave.id),
        "artistId": str(leave.artist_id),
        "startTime": iso_utc(leave.start_time),
        "endTime": iso_utc(leave.end_time),
        "reason": leave.reason,
        "createdAt": iso_utc(leave.created_at),
    }


def booking_json(booking: Booking) -> dict[str, Any]:
    return {
        "id": str(booking.id),
        "clientId": str(booking.client_id),
        "artistId": str(booking.artist_id),
        "serviceId": str(booking.service_id),
        "startTime": iso_utc(booking.start_time),
        "endTime": iso_utc(booking.end_time),
        "status": booking.status,
        "depositAmount": format_amount(booking.deposit_amount, booking.currency),
        "currency": booking.currency,
        "expiresAt": iso_utc(booking.expires_at),
        "createdAt": iso_utc(booking.created_at),
        "confirmedAt": iso_utc(booking.confirmed_at),
        "paymentIntentId": booking.payment_intent_id,
    }


def transaction_json(tx: StripeTransaction) -> dict[str, Any]:
    return {
        "id": str(tx.id),
        "kind": tx.kind,
        "status": tx.status,
        "amount": format_amount(from_minor_units(tx.amount_minor, tx.currency), tx.currency),
        "amountMinor": tx.amount_minor,
        "currency": tx.currency,
        "paymentIntentId": tx.payment_intent_id,
        "stripeObjectId": tx.stripe_object_id,
        "stripeEventId": tx.stripe_event_id,
        "failureCode": tx.failure_code,
        "failureMessage": tx.failure_message,
        "createdAt": iso_utc(tx.created_at),
    }


def notification_json(note: Notification) -> dict[str, Any]:
    return {
        "id": str(note.id),
        "kind": note.kind,
        "channel": note.channel,
        "recipient": note.recipient,
        "status": note.status,
        "sentAt": iso_utc(note.sent_at),
    }
