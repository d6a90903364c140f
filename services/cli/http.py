"""The running system over HTTP: inkflow's API and the Stripe emulator's control API.

Every failure becomes a one-line `CliError`: nothing answering (with a hint to start
`make run`), or an answer the command did not expect (with the API's error code and
message)."""

from __future__ import annotations

import time
from typing import Any

import requests

from services.cli.errors import CliError

TIMEOUT = 10.0
JSON = dict[str, Any]


class Service:
    """One HTTP service; `name` is what error messages call it."""

    def __init__(self, name: str, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.name, self.base_url = name, base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update(headers or {})

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Any:
        url = self.base_url + path
        try:
            response = self.http.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError:
            raise CliError(
                f"cannot reach the {self.name} at {self.base_url}: is `make run` running?"
            ) from None
        except requests.Timeout:
            raise CliError(f"the {self.name} did not answer {method} {path} in time") from None
        if response.status_code not in expect:
            raise CliError(f"{self.name}: {method} {path} answered {_describe(response)}")
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)


def _describe(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"{response.status_code} {body['error']}: {body.get('message', '')}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):  # Stripe's shape
        return f"{response.status_code} {body['error'].get('message', '')}"
    return f"{response.status_code} {str(body)[:200]}"


def poll(check: Any, timeout: float, interval: float = 0.1) -> Any:
    """`check()` until it returns something truthy (returned) or `timeout` runs out (None)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
