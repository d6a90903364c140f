"""Webhook delivery as Stripe does it: each event POSTed to the endpoint as JSON, signed
with the endpoint's secret (``Stripe-Signature: t=<now>,v1=<HMAC-SHA256>``, fresh at
every attempt), in the background, retried with exponential backoff until the endpoint
answers 2xx or the attempts run out.

Stripe retries for up to three days in live mode; the default ``RetryPolicy`` compresses
that for local use (1 s, 2 s, 4 s … capped at 60 s, 8 attempts). Stripe promises neither
order nor a single delivery, and neither does this: senders work in parallel.

Events that happened on a connected account (those with an ``account``: ``account.updated``
after onboarding, ...) go to the Connect endpoint when one is configured, signed with its
own secret, as Stripe sends them to an endpoint created with ``connect=true``; without one
they go to the platform's endpoint (what ``stripe listen`` does without
``--forward-connect-to``).

Any code can hand it an event::

    delivery = WebhookDelivery(Endpoint(url, secret), RetryPolicy())
    delivery.start()
    delivery.submit(event)          # returns at once
    delivery.wait_idle(timeout=5)   # tests: until nothing is due or in flight
    delivery.stop()

``attempts()`` lists what happened (the control API serves it); ``pending()`` and
``restore()`` carry what is still due across a restart (``state.py`` saves it).
"""

from __future__ import annotations

import fnmatch
import heapq
import http.client
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import stripe

from devtools.stripe_emulator.store import JSON

log = logging.getLogger("stripe_emulator.webhooks")

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
ATTEMPTS_KEPT = 2000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook endpoint: where events go, its signing secret, and the event types it
    is enabled for (``*`` and ``payment_intent.*`` patterns, as in the Dashboard)."""

    url: str
    secret: str
    enabled_events: tuple[str, ...] = ("*",)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook endpoint is an http(s) URL, not {self.url!r}")

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.enabled_events)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (from 1) that fails is retried after ``first_delay * factor**(n-1)``
    seconds, at most ``max_delay``; after ``max_attempts`` attempts the event is given up."""

    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 8
    timeout: float = 10.0  # seconds the endpoint has to answer one attempt

    def delay_after(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * self.factor ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class Attempt:
    event_id: str
    type: str
    related: tuple[str, ...]  # ids the event is about (see events.related_ids)
    url: str
    attempt: int
    status: int | None  # HTTP status, None when the endpoint did not answer
    error: str | None
    at: float
    duration_ms: float
    next_retry_at: float | None  # None: delivered, or given up

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_json(self) -> JSON:
        return {**asdict(self), "related": list(self.related), "delivered": self.delivered}


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    event: JSON = field(compare=False)
    attempt: int = field(compare=False, default=1)
    connect: bool = field(compare=False, default=False)  # for the Connect endpoint


def is_connect_event(event: JSON) -> bool:
    """An event that happened on a connected account (it names the account)."""
    return bool(event.get("account"))


# (url, body, headers, timeout) -> HTTP status; raises OSError when nothing answered
Send = Callable[[str, bytes, dict[str, str], float], int]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - Endpoint checks the scheme
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
            status: int = response.status
    except urllib.error.HTTPError as answered:  # a non-2xx answer is an answer
        status = answered.code
        answered.close()
    return status


class WebhookDelivery:
    """Delivers events to the platform's endpoint (and Connect events to the Connect
    endpoint, when there is one) from ``senders`` background threads; thread-safe."""

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        policy: RetryPolicy | None = None,
        *,
        connect: Endpoint | None = None,
        senders: int = 4,
        send: Send = http_post,
        clock: Callable[[], float] = time.time,
        related: Callable[[JSON], Iterable[str]] = lambda e: (),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.endpoint = endpoint
        self.connect = connect
        self.policy = policy or RetryPolicy()
        self._senders = senders
        self._send = send
        self._clock = clock
        self._related = related
        self._on_change = on_change
        self._cond = threading.Condition()
        self._due: list[_Due] = []
        self._in_flight = 0
        self._seq = itertools.count()
        self._attempts: deque[Attempt] = deque(maxlen=ATTEMPTS_KEPT)
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- configuration and lifecycle

    def configure(
        self,
        endpoint: Endpoint | None,
        policy: RetryPolicy | None = None,
        connect: Endpoint | None = None,
    ) -> None:
        """Change the endpoints (None: stop delivering; what is due stays due)."""
        with self._cond:
            self.endpoint = endpoint
            self.connect = connect
            self.policy = policy or self.policy
            self._cond.notify_all()

    def _endpoint_for(self, connect: bool) -> Endpoint | None:
        return self.connect if connect and self.connect is not None else self.endpoint

    def start(self) -> WebhookDelivery:
        with self._cond:
            self._stopping = False
        for n in range(self._senders):
            thread = threading.Thread(target=self._run, name=f"webhook-sender-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # -- what callers hand it

    def submit(self, event: JSON) -> bool:
        """Queue ``event`` for delivery now; False when no endpoint wants it."""
        connect = is_connect_event(event)
        with self._cond:
            endpoint = self._endpoint_for(connect)
            if endpoint is None or not endpoint.wants(str(event.get("type"))):
                return False
            due = _Due(self._clock(), next(self._seq), event, connect=connect)
            heapq.heappush(self._due, due)
            self._cond.notify()
        self._on_change()
        return True

    def submit_all(self, events: Iterable[JSON]) -> None:
        for event in events:
            self.submit(event)

    # -- what it reports

    def attempts(self, related_to: str | None = None, event_id: str | None = None) -> list[Attempt]:
        with self._cond:
            found = list(self._attempts)
        if event_id is not None:
            found = [a for a in found if a.event_id == event_id]
        if related_to is not None:
            found = [a for a in found if related_to in a.related]
        return found

    def pending(self) -> list[JSON]:
        """What is still due (to save across a restart)."""
        with self._cond:
            return [
                {"at": d.at, "attempt": d.attempt, "event": d.event, "connect": d.connect}
                for d in sorted(self._due)
            ]

    def restore(self, items: Iterable[JSON]) -> None:
        with self._cond:
            for item in items:
                due = _Due(
                    float(item["at"]),
                    next(self._seq),
                    item["event"],
                    int(item["attempt"]),
                    bool(item.get("connect", is_connect_event(item["event"]))),
                )
                heapq.heappush(self._due, due)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._due.clear()
            self._attempts.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is in flight and nothing is due (retries included); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight or any(self._endpoint_for(d.connect) for d in self._due):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- the senders

    def _next(self) -> tuple[_Due, Endpoint, RetryPolicy] | None:
        with self._cond:
            while not self._stopping:
                endpoint = self._endpoint_for(self._due[0].connect) if self._due else None
                if endpoint is not None:
                    wait = self._due[0].at - self._clock()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._due), endpoint, self.policy
                    self._cond.wait(min(wait, 1.0))
                else:
                    self._cond.wait(1.0)
        return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            due, endpoint, policy = job
            try:
                self._attempt(due, endpoint, policy)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
                self._on_change()

    def _attempt(self, due: _Due, endpoint: Endpoint, policy: RetryPolicy) -> None:
        event = due.event
        body = json.dumps(event, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                body.decode(), endpoint.secret
            ),
        }
        started = self._clock()
        status: int | None = None
        error: str | None = None
        try:
            status = self._send(endpoint.url, body, headers, policy.timeout)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, garbled
            error = f"{type(exc).__name__}: {exc}"
        delivered = status is not None and 200 <= status < 300
        retry_at: float | None = None
        if not delivered and due.attempt < policy.max_attempts:
            retry_at = self._clock() + policy.delay_after(due.attempt)
        attempt = Attempt(
            event_id=str(event["id"]),
            type=str(event["type"]),
            related=tuple(self._related(event)),
            url=endpoint.url,
            attempt=due.attempt,
            status=status,
            error=error,
            at=started,
            duration_ms=round((self._clock() - started) * 1000, 1),
            next_retry_at=retry_at,
        )
        with self._cond:
            self._attempts.append(attempt)
            if retry_at is not None:
                retry = _Due(retry_at, next(self._seq), event, due.attempt + 1, due.connect)
                heapq.heappush(self._due, retry)
        _log(attempt)


def _log(attempt: Attempt) -> None:
    answer = f"{attempt.status}" if attempt.status is not None else "no answer"
    where = f"{attempt.type} {attempt.event_id} -> {answer} ({attempt.duration_ms:.0f} ms)"
    if attempt.delivered:
        log.info("webhook %s", where)
    elif attempt.next_retry_at is not None:
        wait = max(0.0, attempt.next_retry_at - attempt.at)
        log.warning("webhook %s, attempt %d; retrying in %.0f s", where, attempt.attempt, wait)
    else:
        log.warning("webhook %s, attempt %d; giving up", where, attempt.attempt)


def describe(
    endpoint: Endpoint | None, policy: RetryPolicy, connect: Endpoint | None = None
) -> JSON:
    """The configuration as the control API shows it (the secrets are not shown)."""
    data: dict[str, Any] = {"retry": asdict(policy)}
    if connect is not None:
        data["connect"] = {"url": connect.url, "enabled_events": list(connect.enabled_events)}
    if endpoint is None:
        return {"url": None, **data}
    return {"url": endpoint.url, "enabled_events": list(endpoint.enabled_events), **data}
