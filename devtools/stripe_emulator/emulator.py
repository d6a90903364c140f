"""The emulator: its state, the request pipeline, and what tests and tools call on it."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from devtools.stripe_emulator import (
    account_links,
    accounts,
    charges,
    control,
    events,
    idempotency,
    pages,
    payment_intents,
    refunds,
    state,
)
from devtools.stripe_emulator.delivery import Attempt, Endpoint, RetryPolicy, WebhookDelivery
from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.faults import Faults, Rule
from devtools.stripe_emulator.idempotency import Claim, IdempotencyKeys
from devtools.stripe_emulator.params import check_params
from devtools.stripe_emulator.routing import Route, find
from devtools.stripe_emulator.server import EmulatorServer
from devtools.stripe_emulator.store import JSON, Store, new_id
from devtools.stripe_emulator.wire import (
    API_VERSION,
    Headers,
    RecordedRequest,
    Response,
    decode_form,
)

T = TypeVar("T")
REFUND_EVENTS = ("charge.refunded", "charge.refund.updated")

# A new resource: a module with its handlers and ROUTES, added here.
ROUTES: list[Route] = [
    *payment_intents.ROUTES,
    *refunds.ROUTES,
    *charges.ROUTES,
    *accounts.ROUTES,
    *account_links.ROUTES,
    *events.ROUTES,
]


class StripeEmulator:
    """Stateful Stripe v1 API emulator; all public methods are thread-safe.

    ``webhook``: where emitted events are delivered (``delivery.py``), with ``retry``;
    ``connect_webhook``: where events on connected accounts go instead, when given;
    ``state_path``: a JSON file the state is kept in across restarts (``state.py``);
    ``latency_ms``: added to every API call (not to the control API), for benchmarks.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False,
        webhook: Endpoint | None = None, retry: RetryPolicy | None = None,
        state_path: Path | None = None, latency_ms: float = 0.0,
        connect_webhook: Endpoint | None = None,
    ) -> None:  # fmt: skip
        self.host, self.port, self.verbose = host, port, verbose
        self.latency_ms = latency_ms
        self._lock = threading.RLock()  # held while the store is read or written
        self._stopping = threading.Event()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._store = Store()
        self._idempotency = IdempotencyKeys()
        self._faults = Faults()
        self._requests: list[RecordedRequest] = []
        self._saver = state.Saver(state_path, self._snapshot) if state_path else None
        self.delivery: WebhookDelivery = WebhookDelivery(
            webhook,
            retry,
            connect=connect_webhook,
            related=events.related_ids,
            on_change=self._changed,
        )

    def reset(self) -> None:
        """Forget everything: objects, events, idempotency keys, failure rules, recorded
        requests and deliveries (the webhook endpoint stays configured)."""
        with self._lock:
            self._store.clear()
            self._idempotency.clear()
            self._faults.clear()
            self._requests.clear()
            self.delivery.clear()
        self._changed()

    # state on disk
    def _snapshot(self) -> JSON:
        with self._lock:
            data = copy.deepcopy(self._store.to_json())
        return {
            **data,
            "idempotency": self._idempotency.to_json(),
            "deliveries": self.delivery.pending(),
        }

    def _restore(self, data: JSON) -> None:
        with self._lock:
            self._store.load_json(data)
            self._idempotency.load_json(data.get("idempotency") or [])
        self.delivery.restore(data.get("deliveries") or [])

    def _changed(self) -> None:
        if self._saver is not None:
            self._saver.changed()

    def _deliver(self, emitted: Iterable[JSON]) -> None:
        """Hand events emitted by a state change to the webhook delivery (lock not held)."""
        self.delivery.submit_all(emitted)
        self._changed()

    def _take_outbox(self) -> list[JSON]:
        with self._lock:
            return self._store.take_outbox()

    # lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> StripeEmulator:
        self._stopping.clear()
        if self._saver is not None:
            saved = state.load(self._saver.path)
            if saved is not None:
                self._restore(saved)
            self._saver.start()
        self.delivery.start()
        self._server = EmulatorServer((self.host, self.port), self.dispatch, verbose=self.verbose)
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
        self.delivery.stop()
        if self._saver is not None:
            self._saver.stop()

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

    # failure injection (see faults.py): rules select requests by ``path_prefix`` and ``method``
    def fail_next(
        self, n: int = 1, status: int = 500, error_type: str = "api_error", *,
        path_prefix: str = "/v1/", method: str | None = None, code: str | None = None,
        message: str = "An unknown error occurred.",
    ) -> None:  # fmt: skip
        """Answer the next ``n`` matching requests with this error, without processing them."""
        self._faults.add(Rule("fail", n, path_prefix, method, status, error_type, code, message))

    def fail_always(
        self, status: int = 500, error_type: str = "api_error", *, path_prefix: str = "/v1/",
        method: str | None = None, code: str | None = None,
        message: str = "An unknown error occurred.",
    ) -> None:  # fmt: skip
        """Like ``fail_next`` for every matching request until ``reset_failures()``."""
        rule = Rule("fail", None, path_prefix, method, status, error_type, code, message)
        self._faults.add(rule)

    def delay_next(
        self, seconds: float, n: int = 1, *, path_prefix: str = "/v1/", method: str | None = None,
        phase: Literal["before", "after"] = "after",
    ) -> None:  # fmt: skip
        """Sleep before answering the next ``n`` matching requests: ``after`` processing (the
        answer comes too late, as in a client timeout) or ``before`` it (the request hangs)."""
        self._faults.add(Rule("delay", n, path_prefix, method, seconds=seconds, phase=phase))

    def reset_failures(self) -> None:
        self._faults.clear()

    # state changes Stripe makes out of band, and snapshots
    def payment_intent(self, pi_id: str) -> JSON:
        with self._lock:
            return copy.deepcopy(payment_intents.intent(self._store, pi_id))

    def payment_intents(self) -> list[JSON]:
        """Every PaymentIntent, in the order they were made."""
        with self._lock:
            return copy.deepcopy(list(self._store.intents.values()))

    def succeed_payment_intent(self, pi_id: str) -> JSON:
        """The customer paid: status ``succeeded`` with a new charge as ``latest_charge``
        (emits ``charge.succeeded`` and ``payment_intent.succeeded``)."""
        return self._out_of_band(payment_intents.succeed, pi_id)

    def fail_payment_intent(
        self, pi_id: str, code: str = "card_declined", message: str = "Your card was declined.",
        decline_code: str | None = None,
    ) -> JSON:  # fmt: skip
        """A payment attempt failed: back to ``requires_payment_method`` with the error
        (emits ``payment_intent.payment_failed``)."""
        return self._out_of_band(payment_intents.fail, pi_id, code, message, decline_code)

    def refund_payment_intent(self, pi_id: str, amount: int | None = None) -> JSON:
        """A refund made outside the API, e.g. in the Dashboard (emits ``charge.refunded``)."""
        return self._out_of_band(refunds.refund_out_of_band, pi_id, amount)

    def set_account(
        self, acct_id: str, charges_enabled: bool = True, payouts_enabled: bool | None = None
    ) -> JSON:
        """Create or change a connected account (``details_submitted`` follows charges;
        emits ``account.updated``)."""
        return self._out_of_band(accounts.set_account, acct_id, charges_enabled, payouts_enabled)

    # Connect onboarding (see accounts.py, account_links.py, pages.py)
    def account(self, acct_id: str) -> JSON:
        """An account as Stripe shows it (ApiError 404 when none was made or named)."""
        with self._lock:
            return copy.deepcopy(accounts.stored(self._store, acct_id))

    def account_link(self, link: str) -> JSON:
        """An Account Link (by URL or token): ``account``, ``type``, ``refresh_url``,
        ``return_url``, ``created``, ``expires_at``, ``visited``, ``used`` (completed) and
        whether it is ``usable`` (neither expired nor completed)."""
        with self._lock:
            found = account_links.stored(self._store, link)
            return copy.deepcopy(found) | {"usable": account_links.usable(found)}

    def visit_account_link(self, link: str) -> JSON:
        """A browser opens an Account Link (see ``account_links.visit``)."""
        with self._lock:
            return account_links.visit(self._store, link)

    def complete_onboarding(self, link: str) -> JSON:
        """The user completes the onboarding an Account Link (URL or token) opened: its
        account gets charges and payouts enabled, nothing due (emits ``account.updated``).
        Returns the account; ApiError 400 for a link expired or used, 404 for none."""
        return self._out_of_band(account_links.complete, link)

    def expire_account_link(self, link: str) -> JSON:
        """Time passes for an Account Link: it is past its ``expires_at`` now."""
        with self._lock:
            return account_links.expire(self._store, link)

    def login_link_account(self, token: str) -> str | None:
        """The account an Express login link (its token) opens, None for an unknown one."""
        with self._lock:
            found = self._store.login_links.get(token)
            return None if found is None else str(found["account"])

    def _out_of_band(self, change: Callable[..., T], *args: Any) -> T:
        """Run a change Stripe makes on its own, then deliver the events it emitted."""
        with self._lock:
            try:
                result = change(self._store, *args)
            finally:
                emitted = self._store.take_outbox()
        self._deliver(emitted)
        return result

    def charge_object(self, pi_id: str, *, with_refunds: bool = False) -> JSON:
        """The intent's latest charge as Stripe shows it (e.g. ``charge.refunded`` payloads);
        ``refunded`` is true once refunds (API or ``refund_payment_intent``) cover the amount.
        Its refunds are listed only ``with_refunds`` (as with ``expand[]=refunds``)."""
        with self._lock:
            return payment_intents.latest_charge(self._store, pi_id, with_refunds=with_refunds)

    # refunds: what Stripe holds and does with them (see refunds.py)
    def refund(self, re_id: str) -> JSON:
        with self._lock:
            return copy.deepcopy(refunds.stored(self._store, re_id))

    def refunds_of(self, pi_id: str) -> list[JSON]:
        """The refunds of the intent's charges, oldest first (failed ones included)."""
        with self._lock:
            return [copy.deepcopy(r) for r in self._store.refunds.values()
                    if r["payment_intent"] == pi_id]  # fmt: skip

    def transfer(self, pi_id: str) -> JSON | None:
        """The transfer of the intent's destination charge, with its reversals."""
        with self._lock:
            return charges.transfer_json(self._store, self._latest_charge_id(pi_id))

    def application_fee(self, pi_id: str) -> JSON | None:
        """The platform's application fee on the intent's charge, with its refunds."""
        with self._lock:
            return charges.application_fee_json(self._store, self._latest_charge_id(pi_id))

    def fail_next_refunds(
        self, n: int = 1, reason: str = "expired_or_canceled_card", *, at_once: bool = False
    ) -> None:
        """The next ``n`` refunds created fail: answered ``pending`` and failed at the next
        ``settle_refunds()`` (Stripe's asynchronous failure: ``refund.updated`` and
        ``refund.failed``), or answered ``failed`` with ``at_once``."""
        with self._lock:
            refunds.plan_failures(self._store, n, reason, at_once=at_once)

    def pend_next_refunds(self, n: int = 1) -> None:
        """The next ``n`` refunds created are answered ``pending`` and succeed at the next
        ``settle_refunds()`` (``refund.updated``)."""
        with self._lock:
            refunds.plan_pending(self._store, n)

    def settle_refunds(self) -> list[JSON]:
        """Stripe processes pending refunds: the planned failures fail, the others succeed.
        Returns the events Stripe sends about it."""
        return self._out_of_band(refunds.settle)

    def fail_refund(self, re_id: str, reason: str = "expired_or_canceled_card") -> list[JSON]:
        """A refund fails now (even one that succeeded). Returns the events sent."""
        return self._out_of_band(refunds.fail, re_id, reason)

    # events
    def event(
        self, type: str, obj: JSON, *, event_id: str | None = None, created: int | None = None
    ) -> JSON:
        """A complete Stripe Event wrapping ``obj`` (serialise and sign it yourself)."""
        return events.event(type, obj, event_id=event_id, created=created)

    # events and webhooks
    def send_event(self, type: str, obj: JSON) -> JSON:
        """Log an event of ``obj`` and deliver it to the webhook endpoint, as if Stripe
        emitted it (for event types nothing here emits by itself)."""
        return self._out_of_band(events.emit, type, obj)

    def logged_events(self, related_to: str | None = None) -> list[JSON]:
        """The event log, oldest first (optionally only those about one object id)."""
        with self._lock:
            found = list(self._store.events.values())
        if related_to is not None:
            found = [e for e in found if related_to in events.related_ids(e)]
        return copy.deepcopy(found)

    def resend_event(self, evt_id: str) -> JSON:
        """Deliver a logged event again (``stripe events resend``)."""
        with self._lock:
            if evt_id not in self._store.events:
                raise ApiError(404, f"No such event: '{evt_id}'", "resource_missing", "id")
            evt = copy.deepcopy(self._store.events[evt_id])
        self._deliver([evt])
        return evt

    def configure_webhook(
        self, url: str | None, secret: str = "", enabled_events: Iterable[str] = ("*",),
        retry: RetryPolicy | None = None, *, connect_url: str | None = None,
        connect_secret: str = "",
    ) -> None:  # fmt: skip
        """Deliver to ``url`` from now on (None: stop delivering), and events on connected
        accounts to ``connect_url`` (signed with ``connect_secret``) when given."""
        endpoint = Endpoint(url, secret, tuple(enabled_events)) if url else None
        connect = Endpoint(connect_url, connect_secret) if connect_url else None
        self.delivery.configure(endpoint, retry, connect)

    def deliveries(
        self, related_to: str | None = None, event_id: str | None = None
    ) -> list[Attempt]:
        """Delivery attempts, oldest first (optionally of one event or about one object)."""
        return self.delivery.attempts(related_to=related_to, event_id=event_id)

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Until no delivery is due or in flight (retries included); False on timeout."""
        return self.delivery.wait_idle(timeout)

    def charge_refunded_event(self, pi_id: str, refund_id: str | None = None, **at: Any) -> JSON:
        """``charge.refunded`` for the intent's charge as Stripe sends it after ``refund_id``
        (by default the latest refund): running total only, ``previous_attributes``.
        ``at``: ``event_id``, ``created``."""
        with self._lock:
            ch_id = self._latest_charge_id(pi_id)
            return refunds.charge_refunded_event(self._store, ch_id, refund_id=refund_id, **at)

    def refund_event(self, type: str, re_id: str, previous: JSON | None = None, **at: Any) -> JSON:
        """``refund.created`` / ``refund.updated`` / ``refund.failed`` about the refund now
        (``previous``: the changed fields' former values). ``at``: ``event_id``, ``created``."""
        with self._lock:
            return refunds.refund_event(self._store, type, re_id, previous=previous, **at)

    def emitted_events(
        self, type: str | None = None, *, payment_intent: str | None = None,
        about_refunds: bool = False,
    ) -> list[JSON]:  # fmt: skip
        """The events Stripe sent (so far, oldest first), optionally of one type, about one
        intent (its charge or refunds), or only those about refunds (``refund.*``,
        ``charge.refunded``) rather than the payment's too."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._store.events.values()
                if type in (None, e["type"])
                and payment_intent in (None, _intent_of(e["data"]["object"]))
                and (
                    not about_refunds
                    or e["type"] in REFUND_EVENTS
                    or e["type"].startswith("refund.")
                )
            ]

    def _latest_charge_id(self, pi_id: str) -> str:
        charge_id: str | None = payment_intents.intent(self._store, pi_id)["latest_charge"]
        if charge_id is None:
            raise ValueError(f"{pi_id} has no charge: succeed it first")
        return charge_id

    # request pipeline: record -> injected failure -> auth -> idempotency -> handler -> delay
    def dispatch(self, method: str, target: str, headers: Headers, body: str) -> Response:
        """Answer one HTTP request (the server calls this from its handler threads)."""
        url = urlsplit(target)
        if url.path.startswith(control.PREFIX):
            resp = control.handle(self, method, url.path, body, url.query)
            if method != "GET":
                self._changed()
            return resp
        if url.path.startswith(pages.PREFIXES):
            return pages.handle(self, method, url.path)
        req = RecordedRequest(method, url.path, decode_form(body or url.query), headers)
        with self._lock:
            self._requests.append(req)
        resp = self._answer(req)
        req.status, req.response = resp.status, resp.body
        return resp

    def _answer(self, req: RecordedRequest) -> Response:
        version = req.headers.get("Stripe-Version") or API_VERSION
        base = {"Request-Id": new_id("req_", 14), "Stripe-Version": version}
        if req.publishable:
            # A browser calls with the publishable key (Stripe.js, the booking page's test
            # card form) from the site's own origin; Stripe's API lets any origin read
            # its answer, and so does this one (form-encoded POSTs need no preflight).
            base["Access-Control-Allow-Origin"] = "*"
        fail, delay = self._faults.take("fail", req), self._faults.take("delay", req)
        if fail is not None:
            self._sleep(delay.seconds if delay else 0)
            err = ApiError(fail.status, fail.message, fail.code, type=fail.error_type)
            return Response(fail.status, err.body(), base)
        if self.latency_ms > 0:
            self._sleep(self.latency_ms / 1000)
        key = req.api_key or ""
        if not (re.fullmatch(r"sk_test_\w+", key) or req.publishable):
            msg = f"Invalid API Key provided: {key[:8]}****" if key else "No API key provided."
            return Response(401, ApiError(401, msg, type="authentication_error").body(), base)
        idem = req.idempotency_key if req.method == "POST" else None
        slot = (key, idem or "")
        if idem:
            base["Idempotency-Key"] = idem
            claim = self._idempotency.claim(slot)
            if claim is Claim.BUSY:
                return idempotency.busy(idem, base)
            if claim is not Claim.NEW:
                return idempotency.replay(req, claim, base)
        try:
            if delay is not None and delay.phase == "before":
                self._sleep(delay.seconds)
            resp, store = self._process(req, base)
            if idem and store:
                self._idempotency.keep(slot, req, resp)
        finally:
            if idem:
                self._idempotency.release(slot)
        if delay is not None and delay.phase == "after":
            req.status, req.response = resp.status, resp.body  # the answer is decided already
            self._sleep(delay.seconds)
        return resp

    def _process(self, req: RecordedRequest, base: dict[str, str]) -> tuple[Response, bool]:
        """Route and run; also returns whether Stripe would store the answer (idempotency)."""
        found = find(ROUTES, req.method, req.path)
        if found is None:
            msg = f"Unrecognized request URL ({req.method}: {req.path})."
            return Response(404, ApiError(404, msg).body(), base), False
        route, obj_id = found
        if req.publishable and not route.publishable:
            msg = (
                "This API call cannot be made with a publishable API key. "
                "Please use a secret API key."
            )
            return Response(
                401, ApiError(401, msg, type="invalid_request_error").body(), base
            ), False
        emitted: list[JSON] = []
        try:
            with self._lock:
                try:
                    check_params(req.params, route.params, extra=route.client_params)
                    return Response(200, route.handler(self._store, req, obj_id), base), True
                finally:
                    emitted = self._store.take_outbox()
        except ApiError as e:
            return Response(e.status, e.body(), base), e.store
        finally:
            if emitted or req.method != "GET":
                self._deliver(emitted)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # returns early on stop()


def _intent_of(obj: JSON) -> str | None:
    """The intent an event's object is about (an intent, its charge, a refund)."""
    if obj.get("object") == "payment_intent":
        return str(obj["id"])
    intent = obj.get("payment_intent")
    return str(intent) if intent else None
