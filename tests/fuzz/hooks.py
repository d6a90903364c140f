"""schemathesis hooks for a fuzz run (`SCHEMATHESIS_HOOKS=tests.fuzz.hooks`), reading the
run's seed from INKFLOW_FUZZ_SEED:

- authentication: on the management API the operator token, or for about half of the
  requests an artist's JWT (the artist the request names, when it names a seeded one,
  else the first artist: allowed on that artist's own rows, FORBIDDEN elsewhere); on the
  client endpoints a client JWT — the client the request names when it names a seeded
  one — so that requests are allowed and reach the booking code;
- the webhook: a body that carries a Stripe-Signature header is signed for real with the
  run's STRIPE_WEBHOOK_SECRET, so generated events get past the signature to the inbox.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path
from typing import Any

import schemathesis
import stripe
from schemathesis import Case
from schemathesis.core import NotSet

from tests.fuzz.seed import Seed

AnyCase = Case[Any]
SEED = Seed.load(Path(os.environ["INKFLOW_FUZZ_SEED"]))
WEBHOOK_SECRET = os.environ["INKFLOW_FUZZ_WEBHOOK_SECRET"]
WEBHOOK_PATH = "/api/webhooks/stripe"
SIGNATURE = "Stripe-Signature"


def _named(case: AnyCase, key: str, path_key: str) -> str | None:
    body = case.body if isinstance(case.body, dict) else {}
    for value in (case.path_parameters.get(path_key), body.get(key)):
        if isinstance(value, str):
            return value
    return None


def _pick(options: list[str], case: AnyCase) -> str:
    """One of `options`, the same for the same request (a stable hash, not a draw)."""
    key = f"{case.method} {case.formatted_path} {case.body!r}".encode(errors="replace")
    return options[zlib.crc32(key) % len(options)]


def _token_for(case: AnyCase) -> str | None:
    path = case.operation.path
    if path.startswith("/api/admin/"):
        if _pick(["operator", "artist"], case) == "operator":
            return SEED.operator_token
        artist = _named(case, "artistId", "artist_id")
        return SEED.artist_tokens.get(artist or "", SEED.artist_tokens[SEED.artist_ids[0]])
    if path.startswith(("/api/bookings", "/api/clients", "/api/availability")):
        client = _named(case, "clientId", "client_id")
        if client in SEED.client_tokens:
            return SEED.client_tokens[client]
        return SEED.client_tokens[_pick(sorted(SEED.client_tokens), case)]
    return None  # public: the webhook, probes, the document


@schemathesis.auth(refresh_interval=None)
class Tokens:
    def get(self, case: AnyCase, context: Any) -> str | None:
        return _token_for(case)

    def set(self, case: AnyCase, data: str, context: Any) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(context: Any, case: AnyCase, kwargs: dict[str, Any]) -> None:
    if case.operation.path != WEBHOOK_PATH or isinstance(case.body, NotSet):
        return
    if SIGNATURE not in case.headers:
        return  # a request testing the missing header keeps it missing
    try:
        raw = json.dumps(case.body)
    except (TypeError, ValueError):
        return  # not JSON (a binary body): sent as generated, its signature refused
    kwargs["data"] = raw.encode()
    case.headers[SIGNATURE] = stripe.WebhookSignature.generate_signature_header(
        raw, WEBHOOK_SECRET, timestamp=int(time.time())
    )
