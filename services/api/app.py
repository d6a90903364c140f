"""The Flask application factory."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from services.api.errors import register_error_handlers
from services.api.routes import BLUEPRINTS
from services.api.state import ApiState, init_state
from shared.adapters.locks import SlotLocks
from shared.adapters.payments import StripeGateway
from shared.adapters.queue import CeleryQueue
from shared.adapters.runtime import build_resources
from shared.config import Settings, load_dotenv_for_development
from shared.logging_setup import configure_logging
from shared.usecases.booking import BookingService


def create_app(settings: Settings | None = None) -> Flask:
    if settings is None:
        load_dotenv_for_development()
        settings = Settings.from_env()
    configure_logging(settings.log_level)

    app = Flask("inkflow")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Bodies are small JSON documents; refuse anything large before parsing it.
    app.config["MAX_CONTENT_LENGTH"] = 1 * 1024 * 1024
    resources = build_resources(settings)
    queue = CeleryQueue(settings)
    booking_service = BookingService(
        resources,
        StripeGateway(settings),
        SlotLocks(resources.redis, ttl_seconds=settings.lock_ttl_seconds),
        queue,
    )
    init_state(app, ApiState(resources=resources, bookings=booking_service, queue=queue))
    if settings.cors_origins:
        CORS(app, origins=list(settings.cors_origins))
    register_error_handlers(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
