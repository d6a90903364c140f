"""The API's blueprints, in registration order (the app and the OpenAPI snapshot share it)."""

from __future__ import annotations

from services.api.routes import admin, availability, bookings, docs, health, webhooks

BLUEPRINTS = (
    health.bp,
    availability.bp,
    bookings.bp,
    webhooks.bp,
    admin.bp,
    docs.bp,
    docs.reference,
)
