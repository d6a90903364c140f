"""The HTTP transport of every Stripe call: the SDK's `HTTPClient` on urllib3.

The SDK's default client runs on `requests`, which runs on urllib3; requests' own layer
(sessions, hooks, cookie jars, adapters, the prepared request) cost ~0.35 ms of CPU per
call here, a quarter of a booking's CPU in the API (`python -m tests.bench.costs
--profile`). This client keeps what matters of it:

- one pool of keep-alive connections per process, shared by its threads (urllib3's
  `PoolManager` is thread-safe), with as many connections kept as threads may call;
- TLS verified against the SDK's own CA bundle (`stripe.ca_bundle_path`), as
  `RequestsClient` does;
- the proxy of the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), as requests
  honours it (read once per origin);
- connect and read timeouts of `STRIPE_TIMEOUT_SECONDS` each;
- the SDK's retry rules: timeouts and connection failures may be retried
  (`should_retry`), a certificate that does not verify or anything else may not; the
  SDK itself retries (`STRIPE_MAX_RETRIES`), urllib3 never does.

Every attempt is timed and counted by route and status (`metrics.stripe_call`).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import stripe
import urllib3

from shared.adapters import metrics

# Connections a process keeps to Stripe: one per thread that may call it at once
# (gunicorn's threads; a worker process calls from one thread).
KEPT_CONNECTIONS = 32


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return proxy
    return None


class StripeHttpClient(stripe.HTTPClient):
    name = "urllib3"

    def __init__(self, timeout: float, *, kept_connections: int = KEPT_CONNECTIONS) -> None:
        super().__init__(verify_ssl_certs=True)
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._options: dict[str, Any] = {
            "maxsize": kept_connections,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": stripe.ca_bundle_path,
            "retries": False,
        }
        # One pool manager per origin (Stripe's API is one), direct or through the proxy
        # the environment names for it, read once: the environment of a running process
        # does not change (requests reads it on every call).
        self._managers: dict[str, urllib3.PoolManager] = {}

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        manager = self._managers.get(origin)
        if manager is None:
            proxy = _proxy_for(url)
            made = (
                urllib3.PoolManager(**self._options)
                if proxy is None
                else urllib3.ProxyManager(proxy, **self._options)
            )
            manager = self._managers.setdefault(origin, made)
        return manager

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any,
        *,
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        """One attempt, timed and counted by route and status (0: no answer)."""
        operation = metrics.stripe_operation(method, url)
        started = time.perf_counter()
        try:
            answer = self._manager(url).request(
                method,
                url,
                body=post_data,
                headers=dict(headers or {}),
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=not stream,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes the SDK's error
            metrics.stripe_call(operation, 0, time.perf_counter() - started)
            self._handle_request_error(exc)
        metrics.stripe_call(operation, answer.status, time.perf_counter() - started)
        return answer

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        answer = self._send(method, url, headers, post_data, stream=False)
        return answer.data, answer.status, answer.headers

    def request_stream(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        answer = self._send(method, url, headers, post_data, stream=True)
        return answer, answer.status, answer.headers

    @staticmethod
    def _handle_request_error(exc: Exception) -> NoReturn:
        if isinstance(exc, urllib3.exceptions.SSLError):
            # A certificate that does not verify will not verify on a second try either.
            should_retry = False
        else:
            # Timeouts (read, connect) and connections refused, reset or cut mid-answer.
            should_retry = isinstance(
                exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ProtocolError
            )
        message = (
            "Unexpected error communicating with Stripe.\n\n"
            f"(Network error: {type(exc).__name__}: {exc})"
        )
        raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
            message, should_retry=should_retry
        ) from exc

    def close(self) -> None:
        for manager in self._managers.values():
            manager.clear()
