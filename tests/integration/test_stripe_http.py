"""The Stripe SDK's transport (shared/adapters/stripe_http.py) against real sockets: what
it answers, which failures the SDK may retry, and the environment's proxy."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import stripe

from shared.adapters.stripe_http import StripeHttpClient


@contextmanager
def raw_server(handle: Callable[[socket.socket, bytes], None]) -> Iterator[tuple[int, list[bytes]]]:
    """A one-thread TCP server on a free port: `handle(conn, request_head)` per connection;
    yields the port and the request heads it saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heads: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                heads.append(head)
                handle(conn, head)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, heads
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def answer(body: bytes, status: str = "200 OK") -> Callable[[socket.socket, bytes], None]:
    def handle(conn: socket.socket, _: bytes) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRequest-Id: req_1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return handle


def connection_error(client: StripeHttpClient, url: str) -> stripe.APIConnectionError:
    with pytest.raises(stripe.APIConnectionError) as caught:
        client.request("POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, "a=1")
    return caught.value


def test_an_answer_is_returned_with_its_status_body_and_headers() -> None:
    with raw_server(answer(b'{"error": {}}', "402 Payment Required")) as (port, heads):
        client = StripeHttpClient(timeout=5)
        body, status, headers = client.request(
            "POST", f"http://127.0.0.1:{port}/v1/payment_intents", {"X-Test": "1"}, "amount=5"
        )
    assert (body, status) == (b'{"error": {}}', 402)
    assert headers["request-id"] == "req_1"  # looked up case-insensitively, as the SDK does
    assert heads[0].startswith(b"POST /v1/payment_intents HTTP/1.1\r\n")
    assert b"X-Test: 1" in heads[0]


def test_a_server_that_does_not_answer_times_out_and_may_be_retried() -> None:
    with raw_server(lambda conn, _: time.sleep(1.5)) as (port, _):
        client = StripeHttpClient(timeout=0.3)
        started = time.monotonic()
        error = connection_error(client, f"http://127.0.0.1:{port}/v1/refunds")
        assert time.monotonic() - started < 1.2
    assert error.should_retry is True
    assert "ReadTimeoutError" in str(error)


def test_a_refused_connection_may_be_retried() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    error = connection_error(StripeHttpClient(timeout=1), f"http://127.0.0.1:{port}/v1/refunds")
    assert error.should_retry is True


def test_an_answer_cut_in_the_middle_may_be_retried() -> None:
    def cut(conn: socket.socket, _: bytes) -> None:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')

    with raw_server(cut) as (port, _):
        error = connection_error(StripeHttpClient(timeout=2), f"http://127.0.0.1:{port}/v1/x")
    assert error.should_retry is True


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with raw_server(answer(b"{}")) as (proxy_port, proxy_heads):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "")
        client = StripeHttpClient(timeout=5)
        _, status, _ = client.request("GET", "http://stripe.invalid/v1/balance", {})
        assert status == 200
        # A proxied request names the whole URL.
        assert proxy_heads[0].startswith(b"GET http://stripe.invalid/v1/balance HTTP/1.1")
        with raw_server(answer(b"{}")) as (port, heads):
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            _, status, _ = StripeHttpClient(timeout=5).request(
                "GET", f"http://127.0.0.1:{port}/v1/balance", {}
            )
        assert status == 200
        assert heads[0].startswith(b"GET /v1/balance HTTP/1.1")
        assert len(proxy_heads) == 1
