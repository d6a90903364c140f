"""Idempotency-Key, as Stripe keeps it: per API key, the first answer is stored and
replayed (``Idempotent-Replayed: true``) for the same request; another endpoint or other
parameters under the key get 400 ``idempotency_error``; concurrent use gets 409. A key is
forgotten 24 hours after its first use (Stripe removes keys once they are at least 24 hours
old): the same request then runs again."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.store import JSON
from devtools.stripe_emulator.wire import RecordedRequest, Response

Slot = tuple[str, str]  # (API key, Idempotency-Key)
KEY_TTL_SECONDS = 24 * 3600


class Claim(Enum):
    NEW = "new"  # the caller runs the request, then keep()s or release()s the slot
    BUSY = "busy"  # another request with this key is running


@dataclass(frozen=True)
class Stored:
    method: str
    path: str
    params: JSON
    response: Response
    at: float = field(default_factory=time.time)  # first use, Unix seconds


class IdempotencyKeys:
    """Stored answers and keys in flight; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._stored: dict[Slot, Stored] = {}
        self._in_flight: set[Slot] = set()
        self._clock = clock

    def claim(self, slot: Slot) -> Stored | Claim:
        """The stored answer, or whether the caller may run the request now."""
        with self._lock:
            stored = self._stored.get(slot)
            if stored is not None and self._clock() - stored.at >= KEY_TTL_SECONDS:
                del self._stored[slot]
                stored = None
            if stored is not None:
                return stored
            if slot in self._in_flight:
                return Claim.BUSY
            self._in_flight.add(slot)
            return Claim.NEW

    def keep(self, slot: Slot, req: RecordedRequest, response: Response) -> None:
        with self._lock:
            self._stored[slot] = Stored(req.method, req.path, req.params, response, self._clock())

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._in_flight.discard(slot)

    def clear(self) -> None:
        with self._lock:
            self._stored.clear()
            self._in_flight.clear()

    def to_json(self) -> list[JSON]:
        """The stored answers, to save across a restart (keys in flight are not kept)."""
        with self._lock:
            return [
                {"slot": list(slot), "method": s.method, "path": s.path, "params": s.params,
                 "status": s.response.status, "body": s.response.body,
                 "headers": s.response.headers, "at": s.at}
                for slot, s in self._stored.items()
            ]  # fmt: skip

    def load_json(self, items: list[JSON]) -> None:
        with self._lock:
            for item in items:
                response = Response(item["status"], item["body"], item["headers"])
                at = float(item.get("at") or self._clock())  # state saved before "at"
                stored = Stored(item["method"], item["path"], item["params"], response, at)
                self._stored[(item["slot"][0], item["slot"][1])] = stored


def replay(req: RecordedRequest, stored: Stored, base: dict[str, str]) -> Response:
    """The stored answer again, or 400 when the key was first used for another request."""
    if (stored.method, stored.path) == (req.method, req.path) and stored.params == req.params:
        req.replayed = True
        original = stored.response
        extra = {"Idempotent-Replayed": "true", "Original-Request": original.headers["Request-Id"]}
        return Response(original.status, copy.deepcopy(original.body), base | extra)
    msg = (
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with (first: {stored.method} {stored.path}). Try using a key other than "
        f"'{req.idempotency_key}' if you meant to execute a different request."
    )
    return Response(400, ApiError(400, msg, type="idempotency_error").body(), base)


def busy(idem: str, base: dict[str, str]) -> Response:
    msg = f"There is currently another in-progress request using this key: {idem}."
    return Response(409, ApiError(409, msg, type="idempotency_error").body(), base)
