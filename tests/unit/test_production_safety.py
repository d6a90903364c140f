"""Production-safe defaults: INKFLOW_ENV is production unless the operator opts in, a
published development secret or a short operator token is refused outside development,
RATE_LIMITS is parsed strictly, docker-compose.yml publishes nothing beyond 127.0.0.1 and
no Flower without a password, and `make run` never prints a secret it did not choose."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from devtools.stack import Console, Stack, StackError
from shared.config import ConfigError, Settings, check_safe_to_run
from tests import support

LONG = "a-real-operator-token-" + "x" * 16
BASE = {
    "DATABASE_URL": "postgresql://u@h/db",
    "REDIS_URL": "redis://localhost:6379/0",
    "STRIPE_SECRET_KEY": "sk_live_something",
    "STRIPE_WEBHOOK_SECRET": "whsec_real_secret",
    "ADMIN_API_TOKEN": LONG,
}


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_production_is_the_default_and_a_real_configuration_starts() -> None:
    s = settings()
    assert s.environment == "production"
    assert not s.development
    check_safe_to_run(s)  # nothing raised


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ADMIN_API_TOKEN", "dev-admin-token"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_dev_inkflow"),
        ("STRIPE_SECRET_KEY", "sk_test_dev_inkflow"),
    ],
)
def test_a_published_development_secret_is_refused_in_production(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name} is the published development value") as err:
        check_safe_to_run(settings(**{name: value}))
    assert "INKFLOW_ENV" in str(err.value)
    assert value not in str(err.value)  # the message names the setting, not the secret
    check_safe_to_run(settings(**{name: value}, INKFLOW_ENV="development"))


@pytest.mark.parametrize("token", ["x", "short-token", "y" * 31])
def test_an_operator_token_under_32_characters_is_refused_in_production(token: str) -> None:
    with pytest.raises(ConfigError, match="ADMIN_API_TOKEN is shorter than 32 characters"):
        check_safe_to_run(settings(ADMIN_API_TOKEN=token))
    check_safe_to_run(settings(ADMIN_API_TOKEN=token, INKFLOW_ENV="Development"))
    check_safe_to_run(settings(ADMIN_API_TOKEN="y" * 32))


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        check_safe_to_run(
            settings(ADMIN_API_TOKEN="short", STRIPE_WEBHOOK_SECRET="whsec_dev_inkflow")
        )
    assert "ADMIN_API_TOKEN" in str(err.value)
    assert "STRIPE_WEBHOOK_SECRET" in str(err.value)


def test_inkflow_env_takes_two_values() -> None:
    with pytest.raises(ConfigError, match="INKFLOW_ENV"):
        settings(INKFLOW_ENV="staging")


def test_the_test_suites_tokens_are_production_grade() -> None:
    """Fixtures start the app as production does: no INKFLOW_ENV=development needed."""
    check_safe_to_run(Settings.from_env(support.base_env("postgresql://u@h/db")))


# -- RATE_LIMITS ------------------------------------------------------------------------


def test_rate_limits_are_off_when_unset() -> None:
    assert settings().rate_limits == ()


def test_rate_limits_apply_per_client_and_per_ip_with_overrides() -> None:
    parsed = settings(
        RATE_LIMITS="booking=10/minute,100/hour; booking.ip=30/minute ;availability=60/minute"
    ).rate_limits
    assert dict(parsed) == {
        "availability.client": "60/minute",
        "availability.ip": "60/minute",
        "booking.client": "10/minute,100/hour",
        "booking.ip": "30/minute",  # the override wins, whatever the order
    }
    assert dict(settings(RATE_LIMITS="booking.ip=5/second;booking=1/minute").rate_limits) == {
        "booking.client": "1/minute",
        "booking.ip": "5/second",
    }


@pytest.mark.parametrize(
    "raw",
    ["booking", "refunds=1/minute", "booking.user=1/minute", "booking=often", "booking="],
)
def test_malformed_rate_limits_are_named(raw: str) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMITS"):
        settings(RATE_LIMITS=raw)


# -- docker-compose.yml -----------------------------------------------------------------

COMPOSE = yaml.safe_load((support.ROOT / "docker-compose.yml").read_text())
DEV_ENV = dict(
    line.split("=", 1)
    for line in (support.ROOT / "compose.dev.env").read_text().splitlines()
    if line and not line.startswith("#")
)


def test_compose_publishes_ports_on_localhost_only_by_default() -> None:
    published = [
        (name, port)
        for name, service in COMPOSE["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"api", "flower"}
    for name, port in published:
        assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)


def test_compose_has_no_development_secret_outside_its_dev_env_file() -> None:
    text = (support.ROOT / "docker-compose.yml").read_text()
    for secret in ("dev-admin-token", "whsec_dev_inkflow", "sk_test_dev_inkflow"):
        assert secret not in text
    env = COMPOSE["x-app"]["environment"]
    assert env["INKFLOW_ENV"] == "${INKFLOW_ENV:-production}"
    # The dev profile's file opts in explicitly, with the values it publishes.
    assert DEV_ENV["INKFLOW_ENV"] == "development"
    assert DEV_ENV["ADMIN_API_TOKEN"] == "dev-admin-token"
    assert "--env-file compose.dev.env --profile dev" in (support.ROOT / "Makefile").read_text()


def test_flower_will_not_start_without_basic_auth() -> None:
    flower = COMPOSE["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    script = flower["command"][-1]
    assert script.startswith('test -n "$$FLOWER_BASIC_AUTH" ||')
    assert "exit 1" in script
    assert "exec celery -A services.worker.celery_app flower" in script


# -- make run ---------------------------------------------------------------------------


def stack(tmp_path: Path, **env: str) -> tuple[Stack, io.StringIO]:
    """A Stack whose database, Redis and Stripe are given: it starts no server."""
    out = io.StringIO()
    given = {
        "DATABASE_URL": "postgresql://u@127.0.0.1:9/db",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "STRIPE_SECRET_KEY": "sk_test_given",
        "PATH": "/usr/bin:/bin",
        **env,
    }
    return Stack(var_dir=tmp_path / "var", environ=given, console=Console(out)), out


def test_make_run_opts_in_to_development_and_says_so(tmp_path: Path) -> None:
    s, _ = stack(tmp_path)
    env = s.start_infrastructure()
    assert env["INKFLOW_ENV"] == "development"
    assert env["ADMIN_API_TOKEN"] == "dev-admin-token"
    check_safe_to_run(Settings.from_env(env))  # what it starts is accepted
    banner = s.banner({})
    assert "INKFLOW_ENV=development (make run opted in" in banner
    assert "Admin token:    dev-admin-token" in banner  # it chose it: shown
    assert "INKFLOW_ENV=development" in (tmp_path / "var" / "run.env").read_text()


def test_make_run_never_prints_a_secret_from_the_environment(tmp_path: Path) -> None:
    secret_token, secret_hook = "env-operator-token-" + "s" * 20, "whsec_from_env_secret"
    s, out = stack(
        tmp_path,
        INKFLOW_ENV="development",
        ADMIN_API_TOKEN=secret_token,
        STRIPE_WEBHOOK_SECRET=secret_hook,
        STRIPE_SECRET_KEY="sk_test_from_env_secret",
    )
    s.start_infrastructure()
    s.console.say(s.describe_settings())
    s.console.say(s.banner({}))
    printed = out.getvalue()
    assert "Admin token:    from your environment (not shown)" in printed
    assert "From your environment: INKFLOW_ENV" in printed
    for secret in (secret_token, secret_hook, "sk_test_from_env_secret"):
        assert secret not in printed
    assert "opted in" not in printed  # the operator chose development, not make run


def test_make_run_in_production_fills_in_no_secret(tmp_path: Path) -> None:
    s, _ = stack(tmp_path, INKFLOW_ENV="production", STRIPE_SECRET_KEY="")
    with pytest.raises(StackError) as err:
        s.start_infrastructure()
    message = str(err.value)
    assert "ADMIN_API_TOKEN, STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_KEY" in message
    assert "INKFLOW_ENV=development" in message
    assert s.postgres is None  # nothing was started
    assert s.emulator_url is None
