"""Settings: a missing required setting names itself; nothing is read at import."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, Settings, database_url_from_env

BASE = {
    "DATABASE_URL": "postgresql://u@h/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "STRIPE_SECRET_KEY": "sk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "ADMIN_API_TOKEN": "token",
}


def test_defaults():
    settings = Settings.from_env(BASE)
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.celery_broker_url == BASE["REDIS_URL"]
    assert settings.booking_hold_seconds == 900
    assert settings.hold_sweep_seconds == 60
    assert settings.port == 8000
    assert settings.platform_fee_bps == 0
    assert settings.auth_jwt_secret is None
    assert settings.stripe_api_base is None
    assert settings.reminder_sweep_seconds == 60
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.calendar_token_secret is None
    assert settings.stripe_connect_webhook_secret is None
    assert settings.stripe_connect_country is None
    assert (
        settings.retention_events_days,
        settings.retention_notifications_days,
        settings.retention_idempotency_hours,
        settings.retention_sweep_seconds,
        settings.retention_batch,
        settings.retention_budget_seconds,
    ) == (30, 90, 24, 3600, 1000, 120.0)


@pytest.mark.parametrize("name", sorted(BASE))
def test_missing_required_setting_is_named(name):
    env = {k: v for k, v in BASE.items() if k != name}
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOOKING_HOLD_SECONDS", "soon"),
        ("PORT", "0"),
        ("PLATFORM_FEE_BPS", "10001"),
        ("HOLD_SWEEP_SECONDS", "-5"),
        ("REMINDER_SWEEP_SECONDS", "0"),
        ("PUBLIC_BASE_URL", "inkflow.example"),
        ("STRIPE_CONNECT_COUNTRY", "France"),
        ("STRIPE_CONNECT_COUNTRY", "F1"),
        ("LOG_FORMAT", "xml"),
        ("WORKER_METRICS_PORT", "70000"),
        ("WORKER_METRICS_PORT", "-1"),
        # Stripe redelivers for 3 days: an event purged sooner could be applied twice.
        ("RETENTION_EVENTS_DAYS", "6"),
        ("RETENTION_BATCH", "0"),
    ],
)
def test_malformed_values_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})


def test_lists_and_overrides():
    settings = Settings.from_env(
        {
            **BASE,
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "CELERY_BROKER_URL": "redis://broker:6379/1",
            "LOG_LEVEL": "debug",
            "STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_connect",
            "STRIPE_CONNECT_COUNTRY": "fr",
        }
    )
    assert settings.stripe_connect_webhook_secret == "whsec_connect"
    assert settings.stripe_connect_country == "FR"
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.celery_broker_url == "redis://broker:6379/1"
    assert settings.log_level == "DEBUG"


def test_the_public_base_url_follows_the_port_unless_given():
    assert Settings.from_env({**BASE, "PORT": "9001"}).public_base_url == "http://127.0.0.1:9001"
    given = Settings.from_env({**BASE, "PUBLIC_BASE_URL": "https://book.example/ink/"})
    assert given.public_base_url == "https://book.example/ink"  # links append paths to it


def test_app_start_up_names_the_missing_setting(monkeypatch):
    from services.api.app import create_app

    for name in BASE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env here
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app()


def test_short_jwt_secret_is_refused():
    with pytest.raises(ConfigError, match="AUTH_JWT_SECRET"):
        Settings.from_env({**BASE, "AUTH_JWT_SECRET": "short"})
    assert Settings.from_env({**BASE, "AUTH_JWT_SECRET": "x" * 32}).auth_jwt_secret == "x" * 32


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        (" postgresql://u@h:5433/db ", "postgresql+psycopg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_url_alone_is_normalised(url, expected):
    assert database_url_from_env({"DATABASE_URL": url}) == expected


def test_database_url_alone_names_itself_when_missing():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        database_url_from_env({"DATABASE_URL": "  ", "REDIS_URL": "redis://x"})
