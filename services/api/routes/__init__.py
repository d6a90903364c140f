"""The API's blueprints, in registration order (the app and the OpenAPI snapshot share it)."""

from __future__ import annotations

from services.api.routes import (
    admin,
    availability,
    bookings,
    calendar,
    connect,
    docs,
    health,
    lifecycle,
    metrics,
    webhooks,
)

BLUEPRINTS = (
    health.bp,
    availability.bp,
    bookings.bp,
    lifecycle.client_bp,
    webhooks.bp,
    admin.bp,
    lifecycle.admin_bp,
    calendar.bp,
    connect.bp,
    docs.bp,
    docs.reference,
    metrics.bp,
)
