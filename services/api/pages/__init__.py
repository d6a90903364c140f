"""The web pages served by the API's Flask app (see `web` for what they share).

Page blueprints are listed in `PAGE_BLUEPRINTS`; each is made with
`web.page_blueprint(name, __name__, prefixes=...)` so that it gets the session, CSRF,
HTML error pages and its place outside the OpenAPI document. Handlers stay thin: they
call the same use cases as the JSON API (shared/usecases), never a copy of a rule.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from services.api.pages import booking, dashboard, web
from shared.config import Settings

PAGE_BLUEPRINTS: tuple[Blueprint, ...] = (web.assets, booking.bp, dashboard.bp)


def install(app: Flask, settings: Settings) -> None:
    """Configure the session and CSRF, register the page blueprints. Call in the factory
    before `auth.install` (which reads every route's rule)."""
    web.configure(app, settings)
    for blueprint in PAGE_BLUEPRINTS:
        app.register_blueprint(blueprint)
