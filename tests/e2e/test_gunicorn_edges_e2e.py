"""What only a real gunicorn shows: chunked request bodies over the wire (no
Content-Length) and the control socket gunicorn 25+ opens by default."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import stripe

from tests import support
from tests.e2e.conftest import LiveServer

LIMIT = 1024 * 1024


def chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A generator body: `requests` sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-runtime")


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], runtime_dir: Path) -> LiveServer:
    # gunicorn's default control socket is $XDG_RUNTIME_DIR/gunicorn.ctl: one path for
    # every gunicorn of the user, each unlinking the other's.
    return start_server(workers=1, XDG_RUNTIME_DIR=str(runtime_dir))


def _json_headers(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **extra}


@pytest.mark.parametrize("path", ["/api/admin/clients", "/api/availability"])
def test_a_chunked_json_body_over_one_mib_is_payload_too_large(
    server: LiveServer, path: str
) -> None:
    body = b'{"name": "' + b"x" * LIMIT + b'", "email": "a@b.co"}'
    headers = _json_headers(Authorization=f"Bearer {support.ADMIN_TOKEN}")

    response = server.post(path, data=chunked(body), headers=headers)

    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"


def test_a_chunked_webhook_over_one_mib_is_payload_too_large(server: LiveServer) -> None:
    body = '{"id": "evt_1Big", "type": "x", "pad": "' + "x" * LIMIT + '"}'
    signature = stripe.WebhookSignature.generate_signature_header(
        body, support.WEBHOOK_SECRET, timestamp=int(time.time())
    )

    response = server.post(
        "/api/webhooks/stripe",
        data=chunked(body.encode()),
        headers=_json_headers(**{"Stripe-Signature": signature}),
    )

    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"] == "PAYLOAD_TOO_LARGE"


def test_a_chunked_body_within_the_limit_arrives_whole(server: LiveServer) -> None:
    # Exactly the limit: padded with spaces, which JSON ignores.
    text = b'{"name": "Chunky", "email": "chunky@example.com"}'
    body = text + b" " * (LIMIT - len(text))
    headers = _json_headers(Authorization=f"Bearer {support.ADMIN_TOKEN}")

    response = server.post("/api/admin/clients", data=chunked(body, 7_000), headers=headers)

    assert response.status_code == 201, response.text[:200]
    assert response.json()["email"] == "chunky@example.com"


def test_gunicorn_opens_no_control_socket_unless_asked(
    server: LiveServer, runtime_dir: Path, start_server: Callable[..., LiveServer]
) -> None:
    assert server.get("/healthz").status_code == 200
    assert list(runtime_dir.iterdir()) == []

    asked = runtime_dir / "inkflow-test.ctl"
    other = start_server(workers=1, GUNICORN_CONTROL_SOCKET=str(asked))
    assert other.get("/healthz").status_code == 200
    assert support.wait_until(asked.exists, timeout=10)
    assert asked.is_socket()
