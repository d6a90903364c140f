"""The Flask application factory. Like cosmicpython's `bootstrap()`, it takes the
collaborators a caller wants to choose (a clock that tests move instead of sleeping, a
queue that records, a gateway) and builds the others from the settings."""

from __future__ import annotations

import uuid

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from services.api import auth, pages, ratelimits, security_headers, telemetry
from services.api.bodies import MAX_BODY_BYTES, BoundedBodies
from services.api.errors import register_error_handlers
from services.api.routes import BLUEPRINTS
from services.api.state import ApiState, init_state
from shared.adapters.locks import SlotLocks
from shared.adapters.payments import StripeGateway
from shared.adapters.queue import CeleryQueue, TaskQueue
from shared.adapters.runtime import (
    API_MAX_OVERFLOW,
    API_POOL_SIZE,
    Resources,
    build_resources,
)
from shared.config import Settings, check_safe_to_run, load_dotenv_for_development
from shared.domain.timeutil import Clock, utcnow
from shared.logging_setup import configure_logging
from shared.usecases import refunds
from shared.usecases.booking import BookingService
from shared.usecases.connect import ConnectOnboarding
from shared.usecases.effects import EffectRunner, Outcome
from shared.usecases.lifecycle import Lifecycle


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    queue: TaskQueue | None = None,
    gateway: StripeGateway | None = None,
    resources: Resources | None = None,
    locks: SlotLocks | None = None,
) -> Flask:
    if settings is None:
        load_dotenv_for_development()
        settings = Settings.from_env()
    check_safe_to_run(settings)  # no published secret or short token outside development
    configure_logging(settings.log_level, settings.log_format)

    # No static folder: nothing is served from the disk, every route has an access rule.
    app = Flask("inkflow", static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Bodies are small JSON documents; refuse anything large before parsing it, chunked
    # bodies included.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.wsgi_app = BoundedBodies(app.wsgi_app)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    closers = []
    if resources is None:
        resources = build_resources(
            settings, pool_size=API_POOL_SIZE, max_overflow=API_MAX_OVERFLOW
        )
        closers.append(resources.close)
    if queue is None:
        celery_queue = CeleryQueue(settings)
        closers.append(celery_queue.close)
        queue = celery_queue
    gateway = gateway or StripeGateway(settings)
    locks = locks or SlotLocks(resources.redis, ttl_seconds=settings.lock_ttl_seconds)
    now = clock or utcnow

    def make_refund(refund_id: uuid.UUID) -> Outcome:
        return refunds.make(resources, gateway, refund_id, now=now())

    # The API makes a refund it owes inline once, so the answer can say it succeeded; the
    # worker's task and the sweeper take over when Stripe fails momentarily.
    effects = EffectRunner(queue, gateway, make_refund=make_refund)
    init_state(
        app,
        ApiState(
            resources=resources,
            bookings=BookingService(resources, gateway, locks, effects),
            lifecycle=Lifecycle(resources, locks, effects),
            connect=ConnectOnboarding(resources, gateway),
            effects=effects,
            clock=now,
            gateway=gateway,
            closers=closers,
        ),
    )
    if settings.cors_origins:
        CORS(app, origins=list(settings.cors_origins))
    register_error_handlers(app)
    telemetry.install(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    pages.install(app, settings)  # the HTML pages (services/api/pages)
    auth.install(app)  # after the routes: it reads each one's rule
    ratelimits.install(app, settings)  # after auth: a refused request is not counted
    security_headers.install(app, settings)
    return app
