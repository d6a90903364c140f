"""Settings built from the environment.

Nothing here runs at import time: `Settings.from_env()` is called by the app factory,
the Celery app and the CLI when they start, so a missing setting stops start-up with a
message that names it instead of failing on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# HS256 with a shorter key is guessable (PyJWT only warns): AUTH_JWT_SECRET is refused.
JWT_SECRET_MIN_BYTES = 32
# The operator's token may do everything: outside development a shorter one is refused.
ADMIN_TOKEN_MIN_CHARS = 32

# INKFLOW_ENV: production unless the operator opts in to development (`make run` does, and
# says so), which alone allows the secrets below and a short ADMIN_API_TOKEN.
PRODUCTION = "production"
DEVELOPMENT = "development"
ENVIRONMENTS = (PRODUCTION, DEVELOPMENT)

# Secrets this repository publishes (make run's defaults, docker compose's dev profile, the
# docs): anyone may read them, so a deployment that uses one is open to everyone.
KNOWN_DEVELOPMENT_SECRETS: dict[str, frozenset[str]] = {
    "ADMIN_API_TOKEN": frozenset({"dev-admin-token"}),
    "STRIPE_WEBHOOK_SECRET": frozenset({"whsec_dev_inkflow"}),
    "STRIPE_SECRET_KEY": frozenset({"sk_test_dev_inkflow"}),
    "WEB_SECRET_KEY": frozenset({"dev-web-secret-key-not-for-production-use"}),
}

# RATE_LIMITS names (`services/api/ratelimits.py`): what each limits, per client and per IP.
RATE_LIMITED_ROUTES = ("booking", "availability")
RATE_LIMIT_KEYS = ("client", "ip")

# The web pages' cookie signing key (WEB_SECRET_KEY): as long as a JWT secret.
WEB_SECRET_MIN_BYTES = 32


class ConfigError(Exception):
    """A required setting is missing or malformed; the message names it."""


def check_jwt_secret(secret: str) -> None:
    """AUTH_JWT_SECRET is long enough (the API at start-up, `inkflow token`)."""
    if len(secret.encode()) < JWT_SECRET_MIN_BYTES:
        raise ConfigError(f"setting AUTH_JWT_SECRET must be at least {JWT_SECRET_MIN_BYTES} bytes")


def parse_rate_limits(raw: str) -> tuple[tuple[str, str], ...]:
    """RATE_LIMITS: `NAME=LIMITS` groups separated by `;`, NAME one of RATE_LIMITED_ROUTES
    (both keys), or `NAME.client` / `NAME.ip` (one key, which then wins over `NAME`);
    LIMITS in Flask-Limiter's notation, several separated by `,`
    (`booking=10/minute,100/hour;availability=60/minute`). Returns ((`route.key`,
    limits), ...) for every route and key given."""
    from limits import parse_many  # the notation Flask-Limiter reads, checked at start-up

    given: dict[str, str] = {}
    for group in (part.strip() for part in raw.split(";")):
        if not group:
            continue
        name, sep, value = (piece.strip() for piece in group.partition("="))
        route, _, key = name.partition(".")
        if not sep or route not in RATE_LIMITED_ROUTES or (key and key not in RATE_LIMIT_KEYS):
            names = ", ".join(f"{r}[.client|.ip]" for r in RATE_LIMITED_ROUTES)
            raise ConfigError(
                f"setting RATE_LIMITS: {group!r} is not NAME=LIMITS with NAME one of {names}"
            )
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(
                f"setting RATE_LIMITS: {value!r} ({name}) is not a limit such as 10/minute"
            ) from None
        if not value:
            raise ConfigError(f"setting RATE_LIMITS: {name} has no limit")
        for one in (key,) if key else RATE_LIMIT_KEYS:
            # NAME.key wins over NAME, whatever the order.
            if key or f"{route}.{one}" not in given:
                given[f"{route}.{one}"] = value
    return tuple(sorted(given.items()))


def normalise_db_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, as SQLAlchemy needs it."""
    # Operators paste libpq URLs (postgres://, postgresql://).
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL alone (normalised), for commands that need no other setting."""
    env = os.environ if environ is None else environ
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError("missing required setting DATABASE_URL")
    return normalise_db_url(url)


REQUIRED = (
    "DATABASE_URL",
    "REDIS_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "ADMIN_API_TOKEN",
)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str
    celery_broker_url: str
    stripe_secret_key: str
    stripe_webhook_secret: str
    admin_api_token: str
    stripe_api_base: str | None = None
    # The Connect webhook endpoint's own signing secret: events on connected accounts
    # (account.updated) are signed with it. Optional; the receiver accepts either secret.
    stripe_connect_webhook_secret: str | None = None
    # ISO 3166-1 alpha-2 country of the Express accounts onboarding creates; None: Stripe
    # takes the platform's country.
    stripe_connect_country: str | None = None
    booking_hold_seconds: int = 900
    hold_sweep_seconds: int = 60
    inbox_sweep_seconds: int = 60
    # An inbox event still unprocessed after this long is re-enqueued by the sweeper.
    inbox_redelivery_seconds: int = 120
    port: int = 8000
    platform_fee_bps: int = 0
    auth_jwt_secret: str | None = None
    smtp_url: str | None = None
    mail_from: str = "inkflow <no-reply@inkflow.local>"
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    log_level: str = "INFO"
    log_format: str = "text"  # LOG_FORMAT: text (development) or json (one object per line)
    # The worker's GET /metrics (WORKER_METRICS_PORT, WORKER_METRICS_HOST), served by its
    # main process; 0 = not served (several workers on one host need a port each).
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    stripe_timeout_seconds: float = 10.0
    stripe_max_retries: int = 2
    lock_ttl_seconds: float = 10.0
    # PostgreSQL lock_timeout and statement_timeout of every connection: past them a
    # request answers 503 SERVICE_UNAVAILABLE (with Retry-After) instead of waiting on.
    database_lock_timeout_ms: int = 5000
    database_statement_timeout_ms: int = 15000
    # SQLAlchemy pool of each process: connections kept open (0: the process kind's
    # default, 10 for an API process, 2 for a worker process) and extra ones opened in a
    # burst and closed after it (-1: the kind's default, 0 for an API process, 5 for a
    # worker process; shared/adapters/runtime.py). A connection is only checked out for
    # one short transaction, never across a Stripe call, so a few serve many threads; the
    # sum over all processes must stay under PostgreSQL's max_connections (README
    # "Concurrency").
    database_pool_size: int = 0
    database_max_overflow: int = -1
    max_open_holds_per_client: int = 0  # 0 = no limit
    celery_queue: str = "inkflow"
    # Redis broker: an unacknowledged task (its worker was killed) is handed out again
    # after this long. Longer than the longest task, or a slow task runs twice.
    celery_visibility_timeout: int = 600
    # Deposit intents left behind (shared/usecases/intents.py): looked for this often, in
    # bookings at least this old (older than any booking request can still be running).
    intent_reconcile_seconds: int = 300
    intent_reconcile_grace_seconds: int = 600
    # How often the beat looks for due reminders (REMINDER_SWEEP_SECONDS).
    reminder_sweep_seconds: int = 60
    # Where clients and calendars reach this API (links in e-mails, `calendarUrl`), without
    # a trailing slash. Default: http://127.0.0.1:PORT.
    public_base_url: str = "http://127.0.0.1:8000"
    # The key of the artists' private calendar feed tokens (CALENDAR_TOKEN_SECRET); unset,
    # one is derived from ADMIN_API_TOKEN. Changing either changes every feed URL.
    calendar_token_secret: str | None = None
    # Retention (shared/usecases/retention.py): applied webhook events, sent mails and
    # expired idempotency keys are deleted this long after, by beat tasks every
    # RETENTION_SWEEP_SECONDS, RETENTION_BATCH rows per transaction, for at most
    # RETENTION_BUDGET_SECONDS per run.
    retention_events_days: int = 30
    retention_notifications_days: int = 90
    retention_idempotency_hours: int = 24
    retention_sweep_seconds: int = 3600
    retention_batch: int = 1000
    retention_budget_seconds: float = 120.0
    # INKFLOW_ENV: "production" (the default) or "development" (check_safe_to_run).
    environment: str = PRODUCTION
    # RATE_LIMITS parsed: (("booking.client", "10/minute"), ...); empty: no rate limit.
    rate_limits: tuple[tuple[str, str], ...] = ()
    # TRUSTED_PROXIES: how many reverse proxies stand in front of the API; their
    # X-Forwarded-For/-Proto then give the client's address (per-IP rate limits) and scheme.
    trusted_proxies: int = 0

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT

    # Signs the web pages' session cookie and CSRF tokens and the booking links sent by
    # email (WEB_SECRET_KEY, at least 32 bytes). Required outside development
    # (check_safe_to_run); in development, the pages answer 503 without it. `make run`
    # generates one. Changing it signs everyone out and retires the links already sent.
    web_secret_key: str | None = None
    # Stripe.js's key for the booking page's Payment Element (STRIPE_PUBLISHABLE_KEY).
    stripe_publishable_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in REQUIRED if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"missing required setting(s): {', '.join(missing)}")

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"missing required setting {name}")
            return value

        def optional(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = optional(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"setting {name} must be an integer, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"setting {name} must be >= {minimum}, got {value}")
            return value

        def number(name: str, default: float) -> float:
            raw = optional(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"setting {name} must be a number, got {raw!r}") from None

        redis_url = required("REDIS_URL")
        fee_bps = integer("PLATFORM_FEE_BPS", 0)
        if fee_bps > 10_000:
            raise ConfigError("setting PLATFORM_FEE_BPS must be <= 10000 (100%)")
        jwt_secret = optional("AUTH_JWT_SECRET")
        if jwt_secret is not None:
            check_jwt_secret(jwt_secret)
        cors = optional("CORS_ORIGINS")
        port = integer("PORT", 8000, minimum=1)
        base_url = (optional("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("setting PUBLIC_BASE_URL must start with http:// or https://")
        web_secret_key = optional("WEB_SECRET_KEY")
        if web_secret_key is not None and len(web_secret_key.encode()) < WEB_SECRET_MIN_BYTES:
            raise ConfigError(
                f"setting WEB_SECRET_KEY must be at least {WEB_SECRET_MIN_BYTES} bytes"
            )
        country = optional("STRIPE_CONNECT_COUNTRY")
        if country is not None and not (
            len(country) == 2 and country.isascii() and country.isalpha()
        ):
            raise ConfigError(
                f"setting STRIPE_CONNECT_COUNTRY must be a two-letter country code, got {country!r}"
            )
        environment = (optional("INKFLOW_ENV") or PRODUCTION).lower()
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"setting INKFLOW_ENV must be {' or '.join(ENVIRONMENTS)}, got {environment!r}"
            )
        log_format = (optional("LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"setting LOG_FORMAT must be text or json, got {log_format!r}")
        worker_metrics_port = integer("WORKER_METRICS_PORT", 0)
        if worker_metrics_port > 65535:
            raise ConfigError("setting WORKER_METRICS_PORT must be a TCP port (<= 65535) or 0")
        return cls(
            database_url=normalise_db_url(required("DATABASE_URL")),
            redis_url=redis_url,
            celery_broker_url=optional("CELERY_BROKER_URL") or redis_url,
            stripe_secret_key=required("STRIPE_SECRET_KEY"),
            stripe_webhook_secret=required("STRIPE_WEBHOOK_SECRET"),
            admin_api_token=required("ADMIN_API_TOKEN"),
            stripe_api_base=optional("STRIPE_API_BASE"),
            stripe_connect_webhook_secret=optional("STRIPE_CONNECT_WEBHOOK_SECRET"),
            stripe_connect_country=country.upper() if country else None,
            booking_hold_seconds=integer("BOOKING_HOLD_SECONDS", 900, minimum=1),
            hold_sweep_seconds=integer("HOLD_SWEEP_SECONDS", 60, minimum=1),
            inbox_sweep_seconds=integer("INBOX_SWEEP_SECONDS", 60, minimum=1),
            inbox_redelivery_seconds=integer("INBOX_REDELIVERY_SECONDS", 120, minimum=1),
            port=port,
            platform_fee_bps=fee_bps,
            auth_jwt_secret=jwt_secret,
            smtp_url=optional("SMTP_URL"),
            mail_from=optional("MAIL_FROM") or "inkflow <no-reply@inkflow.local>",
            cors_origins=tuple(o.strip() for o in cors.split(",") if o.strip()) if cors else (),
            log_level=(optional("LOG_LEVEL") or "INFO").upper(),
            log_format=log_format,
            worker_metrics_port=worker_metrics_port,
            worker_metrics_host=optional("WORKER_METRICS_HOST") or "127.0.0.1",
            stripe_timeout_seconds=number("STRIPE_TIMEOUT_SECONDS", 10.0),
            stripe_max_retries=integer("STRIPE_MAX_RETRIES", 2),
            lock_ttl_seconds=number("BOOKING_LOCK_TTL_SECONDS", 10.0),
            database_lock_timeout_ms=integer("DATABASE_LOCK_TIMEOUT_MS", 5000, minimum=1),
            database_statement_timeout_ms=integer(
                "DATABASE_STATEMENT_TIMEOUT_MS", 15000, minimum=1
            ),
            database_pool_size=integer("DATABASE_POOL_SIZE", 0),
            database_max_overflow=integer("DATABASE_MAX_OVERFLOW", -1),
            max_open_holds_per_client=integer("MAX_OPEN_HOLDS_PER_CLIENT", 0),
            celery_queue=optional("CELERY_QUEUE") or "inkflow",
            celery_visibility_timeout=integer("CELERY_VISIBILITY_TIMEOUT", 600, minimum=1),
            intent_reconcile_seconds=integer("INTENT_RECONCILE_SECONDS", 300, minimum=1),
            intent_reconcile_grace_seconds=integer(
                "INTENT_RECONCILE_GRACE_SECONDS", 600, minimum=1
            ),
            reminder_sweep_seconds=integer("REMINDER_SWEEP_SECONDS", 60, minimum=1),
            public_base_url=base_url,
            calendar_token_secret=optional("CALENDAR_TOKEN_SECRET"),
            # An event must outlive Stripe's redeliveries of it (up to 3 days): the inbox
            # deduplicates by event id, so one purged sooner could be applied twice.
            retention_events_days=integer("RETENTION_EVENTS_DAYS", 30, minimum=7),
            retention_notifications_days=integer("RETENTION_NOTIFICATIONS_DAYS", 90, minimum=1),
            retention_idempotency_hours=integer("RETENTION_IDEMPOTENCY_HOURS", 24),
            retention_sweep_seconds=integer("RETENTION_SWEEP_SECONDS", 3600, minimum=1),
            retention_batch=integer("RETENTION_BATCH", 1000, minimum=1),
            retention_budget_seconds=number("RETENTION_BUDGET_SECONDS", 120.0),
            environment=environment,
            rate_limits=parse_rate_limits(optional("RATE_LIMITS") or ""),
            trusted_proxies=integer("TRUSTED_PROXIES", 0),
            web_secret_key=web_secret_key,
            stripe_publishable_key=optional("STRIPE_PUBLISHABLE_KEY"),
        )


def check_safe_to_run(settings: Settings) -> None:
    """Refuse a production start (INKFLOW_ENV unset or production) with a secret this
    repository publishes or an operator token shorter than ADMIN_TOKEN_MIN_CHARS. The API
    and the Celery processes call it when they start; ConfigError names what to change."""
    if settings.development:
        return
    values: dict[str, str | None] = {
        "ADMIN_API_TOKEN": settings.admin_api_token,
        "STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "WEB_SECRET_KEY": settings.web_secret_key,
    }
    problems = [
        f"{name} is the published development value"
        for name, known in KNOWN_DEVELOPMENT_SECRETS.items()
        if values[name] in known
    ]
    published = settings.admin_api_token in KNOWN_DEVELOPMENT_SECRETS["ADMIN_API_TOKEN"]
    if len(settings.admin_api_token) < ADMIN_TOKEN_MIN_CHARS and not published:
        problems.append(
            f"ADMIN_API_TOKEN is shorter than {ADMIN_TOKEN_MIN_CHARS} characters "
            "(`openssl rand -hex 32` makes one)"
        )
    if settings.web_secret_key is None:
        # The web pages' sessions and the booking links in e-mails (API and worker).
        problems.append("WEB_SECRET_KEY is not set (`openssl rand -hex 32` makes one)")
    if problems:
        raise ConfigError(
            f"refusing to start with INKFLOW_ENV={settings.environment}: "
            + "; ".join(problems)
            + ". Set your own secrets, or INKFLOW_ENV=development on a development machine."
        )


def load_dotenv_for_development() -> None:
    """Read `.env` in development without overriding the real environment."""
    from dotenv import load_dotenv

    load_dotenv(override=False)
