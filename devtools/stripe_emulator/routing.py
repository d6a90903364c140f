"""API routes: each resource module lists its own; the emulator serves their union.

A handler gets the store (the emulator's lock is held), the request and the id captured
from the path ("" when the path has none), and returns the object to answer with 200,
or raises ``ApiError``. The request's parameters were checked against ``params``, the
SDK's TypedDict for that call, before the handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from devtools.stripe_emulator.store import JSON, Store
from devtools.stripe_emulator.wire import RecordedRequest

Handler = Callable[[Store, RecordedRequest, str], JSON]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]  # the whole path; at most one group: the object's id
    handler: Handler
    params: type  # stripe.params.*Params
    # Stripe.js may call it with a publishable key (and the object's client_secret).
    publishable: bool = False
    # Parameters the SDK's server-side TypedDict lacks but Stripe.js sends (``key``,
    # ``client_secret``, ``payment_method_data[card]``): allowed, their contents unchecked.
    client_params: frozenset[str] = frozenset()


def route(
    method: str, path: str, handler: Handler, params: type, *, publishable: bool = False,
    client_params: Iterable[str] = (),
) -> Route:  # fmt: skip
    """``route("GET", r"/v1/refunds/([^/]+)", retrieve, sp.RefundRetrieveParams)``"""
    return Route(method, re.compile(path), handler, params, publishable, frozenset(client_params))


def find(routes: Iterable[Route], method: str, path: str) -> tuple[Route, str] | None:
    """The route serving ``method path`` and the id it captured, or None (a 404)."""
    for candidate in routes:
        match = candidate.pattern.fullmatch(path)
        if match and candidate.method == method:
            return candidate, match.group(1) if candidate.pattern.groups else ""
    return None
