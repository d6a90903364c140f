"""Stripe API emulator for tests and local runs: no network, standard library only (+ ``stripe``).

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1 in a background thread) speaking
Stripe's v1 form-encoded API, so the unmodified ``stripe`` SDK works against it::

    with StripeEmulator() as emu:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": emu.url}, max_network_retries=0
        )
        pi = client.v1.payment_intents.create({"amount": 5000, "currency": "eur"})
        emu.succeed_payment_intent(pi.id)

Modelled: PaymentIntents (create/retrieve/update/cancel), Refunds (create/retrieve), Charges
(retrieve) and connected Accounts (retrieve; unknown ``acct_`` ids are auto-created, enabled).

- Allowed parameters (also nested ones) come from the SDK's typed params
  (``stripe.params.*Params``): anything else -> 400 ``parameter_unknown`` like Stripe. Parameters
  the SDK knows but the emulator does not model -> 400 ``emulator_unsupported_parameter``.
- ``Idempotency-Key`` per API key: same request -> stored answer replayed with
  ``Idempotent-Replayed: true``; other endpoint/parameters -> 400 ``idempotency_error``;
  concurrent use -> 409. Validation errors are not stored (as at Stripe).
- Failure injection: ``fail_next``/``fail_always`` answer before the API runs (nothing stored,
  so a retry with the same key succeeds); ``delay_next`` sleeps after processing by default (the
  answer is "lost", as in a client timeout) or before it with ``phase="before"``.
- JSON control API under ``/_emulator/`` (see ``StripeEmulator._control``), no auth.
- Standalone: ``python -m tests.fakes.stripe_emulator --port 12111`` (stops on SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import re
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import stripe
from stripe import params as sp
from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

JSON = dict[str, Any]
API_VERSION: str = stripe.api_version  # what the SDK sends, e.g. "2026-10-28.endive"
# fmt: off
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                           "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
# Stripe's minimum charge amounts (smallest unit); other supported currencies: 1.
_MIN_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "nzd": 50,
               "sgd": 50, "dkk": 250, "nok": 300, "sek": 300, "pln": 200, "czk": 1500,
               "huf": 17500, "ron": 200, "bgn": 100, "hkd": 400, "mxn": 1000, "brl": 50,
               "jpy": 50, "inr": 50, "aed": 200, "thb": 1000, "myr": 200}
_CURRENCIES = _ZERO_DECIMAL | set(_MIN_AMOUNT) | {
    "ars", "cop", "egp", "ils", "isk", "kzt", "mad", "ngn", "php", "pkr", "qar", "rsd", "sar",
    "try", "twd", "uah", "zar", "idr"}
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action")
# fmt: on
_CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


def new_id(prefix: str, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _now() -> int:
    return int(time.time())


# --- form decoding (Stripe bracket notation) --------------------------------------------------


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


# --- errors and validation derived from the SDK's typed params ---------------------------------


class ApiError(Exception):
    """A Stripe-shaped error answer; ``store=False`` marks validation errors (not idempotent)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None, *,
        type: str = "invalid_request_error", store: bool = True, extra: JSON | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type, self.store, self.extra = type, store, extra or {}

    def body(self) -> JSON:
        err: JSON = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        if self.param:
            err["param"] = self.param
        return {"error": {**err, **self.extra}}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code, param, store=False)


def _missing(kind: str, obj_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {kind}: '{obj_id}'", "resource_missing", param)


@dataclass(frozen=True)
class _Field:
    nested: type | None  # TypedDict of a nested hash (or of each item of a list)
    free_form: bool  # Dict[str, str] such as metadata: any keys


@functools.cache
def _fields(td: type) -> dict[str, _Field]:
    """Keys a typed-params TypedDict defines, minus the SDK's request options."""
    module = sys.modules[td.__module__]
    out: dict[str, _Field] = {}
    for name, ann in td.__annotations__.items():
        if name not in _REQUEST_OPTION_KEYS:
            text = ann if isinstance(ann, str) else repr(ann)  # forward refs are strings
            tokens = sorted(set(re.findall(r"[A-Za-z_]\w*", text)))
            nested = [getattr(module, t) for t in tokens if is_typeddict(getattr(module, t, 0))]
            out[name] = _Field(nested[0] if nested else None, "Dict" in tokens)
    return out


def check_params(params: Mapping[str, Any], td: type, prefix: str = "") -> None:
    """Reject keys the SDK's TypedDict ``td`` does not define (recursively) or requires."""
    fields = _fields(td)
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        spec = fields.get(key)
        if spec is None:
            raise _invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")
        if spec.nested is not None and not spec.free_form:
            items = list(enumerate(value)) if isinstance(value, list) else [(-1, value)]
            for i, item in items:
                if isinstance(item, dict):
                    check_params(item, spec.nested, name if i < 0 else f"{name}[{i}]")
    for key in sorted(td.__required_keys__ - _REQUEST_OPTION_KEYS):  # type: ignore[attr-defined]
        if key not in params:
            name = f"{prefix}[{key}]" if prefix else key
            raise _invalid(f"Missing required param: {name}.", name, "parameter_missing")


def _int(params: Mapping[str, Any], key: str, name: str = "", minimum: int = 0) -> int | None:
    raw, name = params.get(key), name or key
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise _invalid(f"Invalid integer: {raw}", name, "parameter_invalid_integer")
    if int(raw) < minimum:
        msg = f"This value must be greater than or equal to {minimum}."
        raise _invalid(msg, name, "parameter_invalid_integer")
    return int(raw)


def _bool(params: Mapping[str, Any], key: str, name: str = "") -> bool | None:
    raw = params.get(key)
    if raw is not None and raw not in ("true", "false"):
        raise _invalid(f"Invalid boolean: {raw}", name or key, "parameter_invalid_boolean")
    return None if raw is None else raw == "true"


def _enum(params: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    raw = params.get(key)
    if raw is not None and raw not in allowed:
        raise _invalid(f"Invalid {key}: must be one of {', '.join(allowed)}", key)
    return raw


def _metadata(raw: Any, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Stripe metadata semantics: ``""`` clears all, a key set to ``""`` is removed."""
    out = dict(base or {})
    if raw is None or raw == "":
        return out if raw is None else {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _invalid("Invalid hash", "metadata")
    for key, value in raw.items():
        if len(key) > 40 or len(value) > 500:
            raise _invalid("Metadata keys may have 40 and values 500 characters.", "metadata")
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    if len(out) > 50:
        raise _invalid("You can have at most 50 metadata keys.", "metadata")
    return out


def _only(params: Mapping[str, Any], modelled: Iterable[str]) -> None:
    """Refuse SDK-valid parameters this emulator does not model (``false``/``""`` are fine)."""
    for key in sorted(set(params) - {"expand", *modelled}):
        if params[key] not in ("false", ""):
            msg = f"The Stripe emulator does not model parameter: {key}"
            raise _invalid(msg, key, "emulator_unsupported_parameter")


# --- recording and failure injection ----------------------------------------------------------


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
    def stripe_account(self) -> str | None:
        return self.headers.get("Stripe-Account")

    @property
    def api_key(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def to_dict(self) -> JSON:
        return {**asdict(self), "headers": dict(self.headers)}


@dataclass
class _Rule:
    kind: Literal["fail", "delay"]
    remaining: int | None  # None: always
    path_prefix: str = "/v1/"
    method: str | None = None
    status: int = 500
    error_type: str = "api_error"
    code: str | None = None
    message: str = "An unknown error occurred."
    seconds: float = 0.0
    phase: Literal["before", "after"] = "after"


@dataclass
class _Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


_ROUTES: list[tuple[str, re.Pattern[str], str, type]] = [
    (method, re.compile(path), handler, td)
    for method, path, handler, td in [
        ("POST", r"/v1/payment_intents", "_pi_create", sp.PaymentIntentCreateParams),
        ("GET", r"/v1/payment_intents/([^/]+)", "_pi_retrieve", sp.PaymentIntentRetrieveParams),
        ("POST", r"/v1/payment_intents/([^/]+)", "_pi_update", sp.PaymentIntentUpdateParams),
        ("POST", r"/v1/payment_intents/([^/]+)/cancel", "_pi_cancel", sp.PaymentIntentCancelParams),
        ("POST", r"/v1/refunds", "_refund_create", sp.RefundCreateParams),
        ("GET", r"/v1/refunds/([^/]+)", "_refund_retrieve", sp.RefundRetrieveParams),
        ("GET", r"/v1/charges/([^/]+)", "_charge_retrieve", sp.ChargeRetrieveParams),
        ("GET", r"/v1/accounts/([^/]+)", "_account_retrieve", sp.AccountRetrieveParams),
    ]
]


# --- the emulator -----------------------------------------------------------------------------


class StripeEmulator:
    """Stateful Stripe v1 API emulator; all public methods are thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host, self.port, self.verbose = host, port, verbose
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything: objects, idempotency keys, failure rules and recorded requests."""
        with self._lock:
            self._intents: dict[str, JSON] = {}
            self._charges: dict[str, JSON] = {}  # ch_ -> {id, payment_intent, refunds, ...}
            self._refunds: dict[str, JSON] = {}
            self._accounts: dict[str, JSON] = {}
            self._idempotency: dict[tuple[str, str], tuple[str, str, JSON, _Response]] = {}
            self._in_flight: set[tuple[str, str]] = set()
            self._rules: list[_Rule] = []
            self._requests: list[RecordedRequest] = []

    # lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> StripeEmulator:
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _RequestHandler)
        self._server.emulator = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._stopping.set()  # wakes delayed answers
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # recorded requests
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        method = method and method.upper()
        return [
            r
            for r in self.requests
            if r.path.startswith(path_prefix) and method in (None, r.method)
        ]

    def clear(self) -> None:
        """Forget recorded requests (objects and idempotency keys are kept)."""
        with self._lock:
            self._requests.clear()

    # failure injection: rules select requests by ``path_prefix`` and ``method``; first match wins
    def fail_next(
        self, n: int = 1, status: int = 500, error_type: str = "api_error", *,
        path_prefix: str = "/v1/", method: str | None = None, code: str | None = None,
        message: str = "An unknown error occurred.",
    ) -> None:  # fmt: skip
        """Answer the next ``n`` matching requests with this error, without processing them."""
        rule = _Rule("fail", n, path_prefix, method, status, error_type, code, message)
        self._add_rule(rule)

    def fail_always(
        self, status: int = 500, error_type: str = "api_error", *, path_prefix: str = "/v1/",
        method: str | None = None, code: str | None = None,
        message: str = "An unknown error occurred.",
    ) -> None:  # fmt: skip
        """Like ``fail_next`` for every matching request until ``reset_failures()``."""
        rule = _Rule("fail", None, path_prefix, method, status, error_type, code, message)
        self._add_rule(rule)

    def delay_next(
        self, seconds: float, n: int = 1, *, path_prefix: str = "/v1/", method: str | None = None,
        phase: Literal["before", "after"] = "after",
    ) -> None:  # fmt: skip
        """Sleep before answering the next ``n`` matching requests: ``after`` processing (the
        answer comes too late, as in a client timeout) or ``before`` it (the request hangs)."""
        self._add_rule(_Rule("delay", n, path_prefix, method, seconds=seconds, phase=phase))

    def reset_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add_rule(self, rule: _Rule) -> None:
        rule.method = rule.method and rule.method.upper()
        with self._lock:
            self._rules.append(rule)

    def _take_rule(self, kind: str, req: RecordedRequest) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if (
                    rule.kind == kind
                    and req.path.startswith(rule.path_prefix)
                    and rule.method in (None, req.method)
                ):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    # state changes Stripe makes out of band, and snapshots
    def payment_intent(self, pi_id: str) -> JSON:
        with self._lock:
            return copy.deepcopy(self._intent(pi_id))

    def succeed_payment_intent(self, pi_id: str) -> JSON:
        """The customer paid: status ``succeeded`` with a new charge as ``latest_charge``."""
        with self._lock:
            pi = self._transition(pi_id, "succeeded")
            ch_id, pm_id = new_id("ch_"), new_id("pm_")
            self._charges[ch_id] = {
                "id": ch_id, "payment_intent": pi_id, "created": _now(), "refunds": [],
                "payment_method": pm_id,
            }  # fmt: skip
            pi.update(amount_received=pi["amount"], latest_charge=ch_id, payment_method=pm_id)
            pi["last_payment_error"] = None
            return copy.deepcopy(pi)

    def fail_payment_intent(
        self, pi_id: str, code: str = "card_declined", message: str = "Your card was declined."
    ) -> JSON:
        """A payment attempt failed: back to ``requires_payment_method`` with the error."""
        with self._lock:
            pi = self._transition(pi_id, "requires_payment_method")
            pi["last_payment_error"] = {
                "type": "card_error", "code": code, "message": message,
                "decline_code": "generic_decline" if code == "card_declined" else None,
                "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
            }  # fmt: skip
            return copy.deepcopy(pi)

    def refund_payment_intent(self, pi_id: str, amount: int | None = None) -> JSON:
        """A refund made outside the API (e.g. in the Dashboard)."""
        params = {"payment_intent": pi_id} | ({"amount": str(amount)} if amount else {})
        with self._lock:
            return self._refund_create(RecordedRequest("POST", "", params, Headers()), "")

    def set_account(
        self, acct_id: str, charges_enabled: bool = True, payouts_enabled: bool | None = None
    ) -> JSON:
        """Create or change a connected account (``details_submitted`` follows charges)."""
        state = "active" if charges_enabled else "inactive"
        with self._lock:
            account = self._account(acct_id)
            account.update(
                charges_enabled=charges_enabled,
                payouts_enabled=charges_enabled if payouts_enabled is None else payouts_enabled,
                details_submitted=charges_enabled,
                capabilities={"card_payments": state, "transfers": state},
            )
            account["requirements"].update(
                currently_due=[] if charges_enabled else ["external_account"],
                disabled_reason=None if charges_enabled else "requirements.past_due",
            )
            return copy.deepcopy(account)

    def charge_object(self, pi_id: str) -> JSON:
        """The intent's latest charge as Stripe shows it (e.g. ``charge.refunded`` payloads);
        ``refunded`` is true once refunds (API or ``refund_payment_intent``) cover the amount."""
        with self._lock:
            pi = self._intent(pi_id)
            if not pi["latest_charge"]:
                raise ValueError(f"{pi_id} has no charge: succeed it first")
            return self._charge_json(pi["latest_charge"])

    def event(
        self, type: str, obj: JSON, *, event_id: str | None = None, created: int | None = None
    ) -> JSON:
        """A complete Stripe Event wrapping ``obj`` (serialise and sign it yourself)."""
        return {
            "id": event_id or new_id("evt_"), "object": "event", "api_version": API_VERSION,
            "created": _now() if created is None else created, "data": {"object": obj},
            "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": type,
        }  # fmt: skip

    # internal state access (the caller holds the lock)
    def _intent(self, pi_id: str) -> JSON:
        if pi_id not in self._intents:
            raise _missing("payment_intent", pi_id, "intent")
        return self._intents[pi_id]

    def _transition(self, pi_id: str, status: str) -> JSON:
        pi = self._intent(pi_id)
        if pi["status"] not in (*_CANCELABLE, "processing"):
            raise ValueError(f"cannot move {pi_id} from {pi['status']} to {status}")
        pi["status"] = status
        return pi

    def _account(self, acct_id: str) -> JSON:
        # fmt: off
        return self._accounts.setdefault(acct_id, {
            "id": acct_id, "object": "account", "type": "express", "country": "DE",
            "default_currency": "eur", "charges_enabled": True, "payouts_enabled": True,
            "details_submitted": True, "email": None, "metadata": {}, "created": _now(),
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "requirements": {"currently_due": [], "eventually_due": [], "past_due": [],
                             "disabled_reason": None},
        })
        # fmt: on

    def _charge_json(self, ch_id: str) -> JSON:
        ch = self._charges[ch_id]
        pi = self._intents[ch["payment_intent"]]
        refunds = [copy.deepcopy(self._refunds[r]) for r in ch["refunds"]]
        refunded = sum(r["amount"] for r in refunds)
        # fmt: off
        return {
            "id": ch_id, "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"], "amount_refunded": refunded,
            "refunded": refunded >= pi["amount"], "captured": True, "paid": True,
            "application_fee_amount": pi["application_fee_amount"], "balance_transaction": None,
            "created": ch["created"], "currency": pi["currency"], "livemode": False,
            "metadata": dict(pi["metadata"]), "payment_intent": pi["id"],
            "payment_method": ch["payment_method"], "status": "succeeded",
            "transfer_data": copy.deepcopy(pi["transfer_data"]), "on_behalf_of": pi["on_behalf_of"],
            "failure_code": None, "failure_message": None,
            "refunds": {"object": "list", "data": refunds, "has_more": False,
                        "total_count": len(refunds), "url": f"/v1/charges/{ch_id}/refunds"},
        }
        # fmt: on

    # API handlers: (request, id from the path) -> object; called with the lock held
    def _pi_create(self, req: RecordedRequest, _: str) -> JSON:
        p = req.params
        echoed = ("description", "customer", "receipt_email", "statement_descriptor",
                  "statement_descriptor_suffix", "setup_future_usage", "transfer_group",
                  "on_behalf_of")  # fmt: skip
        _only(p, ("amount", "currency", "automatic_payment_methods", "metadata", "transfer_data",
                  "application_fee_amount", *echoed))  # fmt: skip
        amount = _int(p, "amount", minimum=1) or 0
        currency = str(p["currency"]).lower()
        if currency not in _CURRENCIES:
            raise _invalid(f"Invalid currency: {p['currency']}.", "currency", "parameter_invalid")
        least = _MIN_AMOUNT.get(currency, 1)
        if amount < least:
            shown = least if currency in _ZERO_DECIMAL else f"{least / 100:.2f}"
            msg = f"Amount must be at least {shown} {currency}"
            raise _invalid(msg, "amount", "amount_too_small")
        if amount > 99_999_999:
            raise _invalid("Amount must be no more than 99999999", "amount", "amount_too_large")
        apm = p.get("automatic_payment_methods")
        if isinstance(apm, dict):
            enabled = _bool(apm, "enabled", "automatic_payment_methods[enabled]")
            apm = {"enabled": enabled, "allow_redirects": apm.get("allow_redirects", "always")}
        transfer = p.get("transfer_data")
        if isinstance(transfer, dict):
            transfer = self._transfer_data(transfer, amount)
        fee = _int(p, "application_fee_amount")
        if fee is not None and not (transfer or req.stripe_account):
            msg = (
                "Can only apply an application_fee_amount when the PaymentIntent is attempting "
                "a direct payment (using an OAuth key or Stripe-Account header) or destination "
                "payment (using `transfer_data[destination]`)."
            )
            raise _invalid(msg, "application_fee_amount")
        if fee is not None and fee > amount:
            msg = "The application fee cannot exceed the amount."
            raise _invalid(msg, "application_fee_amount")
        pi_id = new_id("pi_")
        # fmt: off
        pi: JSON = {
            "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "application": None, "application_fee_amount": fee,
            "automatic_payment_methods": apm, "canceled_at": None, "cancellation_reason": None,
            "capture_method": "automatic_async", "client_secret": f"{pi_id}_secret_{new_id('')}",
            "confirmation_method": "automatic", "created": _now(), "currency": currency,
            "last_payment_error": None, "latest_charge": None, "livemode": False,
            "metadata": _metadata(p.get("metadata")), "next_action": None,
            "payment_method": None, "payment_method_options": {},
            "payment_method_types": ["card"], "processing": None,
            "status": "requires_payment_method", "transfer_data": transfer,
            **{k: p.get(k) for k in echoed},
        }
        # fmt: on
        self._intents[pi_id] = pi
        return copy.deepcopy(pi)

    def _transfer_data(self, transfer: JSON, amount: int) -> JSON:
        dest, param = str(transfer["destination"]), "transfer_data[destination]"
        if not dest.startswith("acct_"):
            raise _invalid(f"No such destination: '{dest}'", param, "resource_missing")
        if not self._account(dest)["charges_enabled"]:
            msg = (
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments"
            )
            raise ApiError(400, msg, "insufficient_capabilities_for_transfer", param)
        share = _int(transfer, "amount", "transfer_data[amount]")
        if share is not None and share > amount:
            raise _invalid("transfer_data[amount] cannot exceed amount", "transfer_data[amount]")
        return {"destination": dest} | ({} if share is None else {"amount": share})

    def _pi_retrieve(self, req: RecordedRequest, pi_id: str) -> JSON:
        return copy.deepcopy(self._intent(pi_id))

    def _pi_update(self, req: RecordedRequest, pi_id: str) -> JSON:
        _only(req.params, ("metadata", "description"))
        pi = self._intent(pi_id)
        pi["metadata"] = _metadata(req.params.get("metadata"), pi["metadata"])
        pi["description"] = req.params.get("description", pi["description"])
        return copy.deepcopy(pi)

    def _pi_cancel(self, req: RecordedRequest, pi_id: str) -> JSON:
        reason = _enum(req.params, "cancellation_reason", _CANCEL_REASONS)
        pi = self._intent(pi_id)
        if pi["status"] not in _CANCELABLE:
            msg = (
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}."
                f" Only a PaymentIntent with one of the following statuses may be canceled: "
                f"{', '.join(_CANCELABLE)}."
            )
            extra = {"payment_intent": copy.deepcopy(pi)}
            raise ApiError(400, msg, "payment_intent_unexpected_state", extra=extra)
        pi.update(status="canceled", canceled_at=_now(), cancellation_reason=reason)
        return copy.deepcopy(pi)

    def _refund_create(self, req: RecordedRequest, _: str) -> JSON:
        p = req.params
        _only(p, ("payment_intent", "charge", "amount", "reason", "metadata", "reverse_transfer",
                  "refund_application_fee"))  # fmt: skip
        reason = _enum(p, "reason", _REFUND_REASONS)
        reverse = _bool(p, "reverse_transfer")
        _bool(p, "refund_application_fee")
        amount = _int(p, "amount", minimum=1)
        metadata = _metadata(p.get("metadata"))
        if "charge" in p:
            if p["charge"] not in self._charges:
                raise _missing("charge", p["charge"], "charge")
            pi = self._intents[self._charges[p["charge"]]["payment_intent"]]
        elif "payment_intent" in p:
            pi = self._intent(p["payment_intent"])
        else:
            msg = "One of the following params should be provided: payment_intent, charge."
            raise _invalid(msg, None, "parameter_missing")
        if pi["status"] != "succeeded":
            msg = f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund."
            raise ApiError(400, msg, "charge_not_refundable", "payment_intent")
        charge = self._charges[pi["latest_charge"]]
        left = pi["amount"] - sum(self._refunds[r]["amount"] for r in charge["refunds"])
        if left <= 0:
            msg = f"Charge {charge['id']} has already been refunded."
            raise ApiError(400, msg, "charge_already_refunded")
        if amount is not None and amount > left:
            msg = f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
            raise ApiError(400, msg, "amount_too_large", "amount")
        re_id = new_id("re_")
        # fmt: off
        self._refunds[re_id] = {
            "id": re_id, "object": "refund", "amount": amount or left, "balance_transaction": None,
            "charge": charge["id"], "created": _now(), "currency": pi["currency"],
            "destination_details": None, "metadata": metadata, "payment_intent": pi["id"],
            "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": new_id("trr_") if reverse and pi["transfer_data"] else None,
        }
        # fmt: on
        charge["refunds"].append(re_id)
        return copy.deepcopy(self._refunds[re_id])

    def _refund_retrieve(self, req: RecordedRequest, re_id: str) -> JSON:
        if re_id not in self._refunds:
            raise _missing("refund", re_id)
        return copy.deepcopy(self._refunds[re_id])

    def _charge_retrieve(self, req: RecordedRequest, ch_id: str) -> JSON:
        if ch_id not in self._charges:
            raise _missing("charge", ch_id)
        return self._charge_json(ch_id)

    def _account_retrieve(self, req: RecordedRequest, acct_id: str) -> JSON:
        if not acct_id.startswith("acct_"):
            msg = f"The provided key does not have access to account '{acct_id}'."
            raise ApiError(403, msg, "account_invalid", type="invalid_request_error")
        return copy.deepcopy(self._account(acct_id))

    # request pipeline: record -> injected failure -> auth -> idempotency -> handler -> delay
    def dispatch(self, method: str, target: str, headers: Headers, body: str) -> _Response:
        url = urlsplit(target)
        if url.path.startswith("/_emulator/"):
            return self._control(method, url.path, body)
        req = RecordedRequest(method, url.path, decode_form(body or url.query), headers)
        with self._lock:
            self._requests.append(req)
        resp = self._answer(req)
        req.status, req.response = resp.status, resp.body
        return resp

    def _answer(self, req: RecordedRequest) -> _Response:
        version = req.headers.get("Stripe-Version") or API_VERSION
        base = {"Request-Id": new_id("req_", 14), "Stripe-Version": version}
        fail, delay = self._take_rule("fail", req), self._take_rule("delay", req)
        if fail is not None:
            self._sleep(delay.seconds if delay else 0)
            err = ApiError(fail.status, fail.message, fail.code, type=fail.error_type)
            return _Response(fail.status, err.body(), base)
        key = req.api_key or ""
        if not re.fullmatch(r"sk_test_\w+", key):
            msg = f"Invalid API Key provided: {key[:8]}****" if key else "No API key provided."
            return _Response(401, ApiError(401, msg, type="authentication_error").body(), base)
        idem = req.idempotency_key if req.method == "POST" else None
        slot = (key, idem or "")
        if idem:
            base["Idempotency-Key"] = idem
            with self._lock:
                stored = self._idempotency.get(slot)
                busy = stored is None and slot in self._in_flight
                if stored is None and not busy:
                    self._in_flight.add(slot)
            if stored is not None:
                return self._replay(req, stored, base)
            if busy:
                msg = f"There is currently another in-progress request using this key: {idem}."
                return _Response(409, ApiError(409, msg, type="idempotency_error").body(), base)
        try:
            if delay is not None and delay.phase == "before":
                self._sleep(delay.seconds)
            resp, store = self._process(req, base)
            if idem and store:
                with self._lock:
                    self._idempotency[slot] = (req.method, req.path, req.params, resp)
        finally:
            with self._lock:
                self._in_flight.discard(slot)
        if delay is not None and delay.phase == "after":
            req.status, req.response = resp.status, resp.body  # the answer is decided already
            self._sleep(delay.seconds)
        return resp

    def _replay(
        self, req: RecordedRequest, stored: tuple[str, str, JSON, _Response], base: dict[str, str]
    ) -> _Response:
        method, path, params, resp = stored
        if (method, path) == (req.method, req.path) and params == req.params:
            req.replayed = True
            extra = {"Idempotent-Replayed": "true", "Original-Request": resp.headers["Request-Id"]}
            return _Response(resp.status, copy.deepcopy(resp.body), base | extra)
        msg = (
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with (first: {method} {path}). Try using a key other than "
            f"'{req.idempotency_key}' if you meant to execute a different request."
        )
        return _Response(400, ApiError(400, msg, type="idempotency_error").body(), base)

    def _process(self, req: RecordedRequest, base: dict[str, str]) -> tuple[_Response, bool]:
        """Route and run; also returns whether Stripe would store the answer (idempotency)."""
        for method, pattern, handler, td in _ROUTES:
            match = pattern.fullmatch(req.path)
            if match and method == req.method:
                obj_id = match.group(1) if pattern.groups else ""
                try:
                    with self._lock:
                        check_params(req.params, td)
                        return _Response(200, getattr(self, handler)(req, obj_id), base), True
                except ApiError as e:
                    return _Response(e.status, e.body(), base), e.store
        msg = f"Unrecognized request URL ({req.method}: {req.path})."
        return _Response(404, ApiError(404, msg).body(), base), False

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # returns early on stop()

    def _control(self, method: str, path: str, body: str) -> _Response:
        """JSON control API under ``/_emulator/``: 200 with the result (``{"ok": true}`` for
        actions), 400/404 with ``{"error": ...}``. Bodies are the Python methods' keywords."""
        routes: dict[tuple[str, str], Callable[[JSON, str], Any]] = {
            ("POST", "payment_intents/*/succeed"): lambda d, i: self.succeed_payment_intent(i),
            ("POST", "payment_intents/*/fail"): lambda d, i: self.fail_payment_intent(i, **d),
            ("POST", "payment_intents/*/refund"): lambda d, i: self.refund_payment_intent(
                i, d.get("amount")
            ),
            ("GET", "payment_intents/*"): lambda d, i: self.payment_intent(i),
            ("GET", "payment_intents/*/charge"): lambda d, i: self.charge_object(i),
            ("POST", "accounts/*"): lambda d, i: self.set_account(i, **d),
            ("POST", "events"): lambda d, i: self._control_event(d),
            ("POST", "fail_next"): lambda d, i: self._control_fail(d),
            ("POST", "delay_next"): lambda d, i: self.delay_next(**d),
            ("POST", "reset_failures"): lambda d, i: self.reset_failures(),
            ("POST", "reset"): lambda d, i: self.reset(),
            ("POST", "clear"): lambda d, i: self.clear(),
            ("GET", "requests"): lambda d, i: [r.to_dict() for r in self.requests],
        }
        parts = path.removeprefix("/_emulator/").strip("/").split("/")
        obj_id = parts[1] if len(parts) > 1 else ""
        route = "/".join("*" if n == 1 else part for n, part in enumerate(parts))
        if (method, route) not in routes:
            return _Response(404, {"error": f"no control route {method} {path}"})
        try:
            result = routes[method, route](json.loads(body or "{}"), obj_id)
            return _Response(200, {"ok": True} if result is None else result)
        except ApiError as e:
            return _Response(e.status, e.body())
        except (ValueError, TypeError, KeyError) as e:
            return _Response(400, {"error": f"{type(e).__name__}: {e}"})

    def _control_fail(self, d: JSON) -> None:
        """``{n, status, error_type, path_prefix, method, code, message}``; ``always: true``."""
        if d.pop("always", False):
            d.pop("n", None)
            self.fail_always(**d)
        else:
            self.fail_next(**d)

    def _control_event(self, d: JSON) -> JSON:
        """``{"type", "object"}``, or ``{"type", "payment_intent"}`` built from current state
        (``charge.*`` types wrap the intent's charge); optional ``id`` and ``created``."""
        obj = d.get("object")
        if obj is None:
            pi_id = d["payment_intent"]
            charge = str(d["type"]).startswith("charge.")
            obj = self.charge_object(pi_id) if charge else self.payment_intent(pi_id)
        return self.event(d["type"], obj, event_id=d.get("id"), created=d.get("created"))


# --- HTTP plumbing ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: StripeEmulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads idling on keep-alive connections so they close their sockets."""
        with self._conn_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are normal
            super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like api.stripe.com
    # Head and body go out in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per call), which real Stripe does not impose.
    disable_nagle_algorithm = True
    timeout = 60  # seconds an idle keep-alive connection is kept
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        headers = Headers(self.headers.items())
        resp = self.server.emulator.dispatch(method, self.path, headers, body)
        data = json.dumps(resp.body, indent=2).encode()
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout) or went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stripe API emulator (see module docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with StripeEmulator(args.host, args.port, verbose=args.verbose) as emulator:
        print(f"stripe emulator listening on {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
