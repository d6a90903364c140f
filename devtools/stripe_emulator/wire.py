"""What travels over HTTP: the API version, form bodies, headers, requests and answers."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe

from devtools.stripe_emulator.store import JSON

API_VERSION: str = stripe.api_version  # what the SDK sends, e.g. "2026-10-28.endive"


def decode_form(body: str) -> JSON:
    """Decode ``a[b][c]=1&l[0]=x&l[1]=y`` into ``{"a": {"b": {"c": "1"}}, "l": ["x", "y"]}``.

    Values stay strings; hashes whose keys are all indexes become lists (not ``metadata``).
    """
    root: JSON = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *re.findall(r"([^\[\]]*)\]", "[" + rest)] if rest else [head]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value  # ``a[]=x`` appends
    return {k: _listify(v, k) for k, v in root.items()}


def _listify(node: Any, name: str) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if out and name != "metadata" and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookup (keys are stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """An API request as the emulator saw it, and (once decided) its answer."""

    method: str
    path: str
    params: JSON  # decoded form body (POST) or query string (GET)
    headers: Headers
    status: int | None = None  # set just before the answer is written
    response: Any = None
    replayed: bool = False  # answered from the idempotency store
    at: float = field(default_factory=time.time)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")

    @property
    def base_url(self) -> str:
        """The emulator as the client reached it (links it hands out point back to it)."""
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    @property
    def stripe_account(self) -> str | None:
        return self.headers.get("Stripe-Account")

    @property
    def api_key(self) -> str | None:
        """The bearer token, the Basic user (``curl -u sk_test_…:`` as in Stripe's docs), or
        the ``key`` parameter Stripe.js sends with a publishable key."""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth.removeprefix("Bearer ")
        if auth.startswith("Basic "):
            with contextlib.suppress(ValueError):
                return base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")[0]
        key = self.params.get("key")
        return key if isinstance(key, str) else None

    @property
    def publishable(self) -> bool:
        """Made with a publishable key (Stripe.js in a browser), not a secret one."""
        return bool(re.fullmatch(r"pk_test_\w+", self.api_key or ""))

    def to_dict(self) -> JSON:
        return {**asdict(self), "headers": dict(self.headers)}


@dataclass
class Response:
    """An answer: ``body`` is serialised as JSON, or sent as it is (a ``str``) with another
    ``content_type`` (the emulator's HTML pages)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.content_type == "application/json":
            return json.dumps(self.body, indent=2).encode()
        return str(self.body).encode()
