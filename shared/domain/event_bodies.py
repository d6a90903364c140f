"""What the webhook inbox can store of a signed Stripe event body, decided before any
write: pure rules, no I/O.

Python's `json` parses text that PostgreSQL will not store: NUL (`\\u0000`) in a JSONB
string or key, lone surrogates (`\\ud800`, not UTF-8), NaN and Infinity (not JSON),
numbers beyond a double, nesting deep enough to exhaust the parser, an id or type longer
than the inbox's columns, a `created` beyond BIGINT. Stripe sends none of these, but a
signed body that fails at the INSERT answers 500, and Stripe retries a 5xx for three days
while the event is never applied. So every signed body ends one of two ways:

- stored: NUL and lone surrogates inside strings (keys included) are replaced by U+FFFD,
  the Unicode replacement character. They can only sit in free text in any event Stripe
  could send (ids, amounts and currencies are ASCII), so the event still applies, and
  refusing it would make Stripe retry it for days too;
- refused for good (`UnstorableEvent`, a 400 for Stripe): an id or type the inbox cannot
  key on, a `created` that is no Unix time, no `data.object` object (every event has one,
  and applying reads it), nesting deeper than MAX_EVENT_DEPTH, numbers that are not
  finite doubles or have more than MAX_INTEGER_DIGITS digits. Replacing those would
  change what the event means, and no later delivery can be different.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# The inbox's columns (shared.adapters.models.StripeEvent uses these).
EVENT_ID_MAX_LENGTH = 255
EVENT_TYPE_MAX_LENGTH = 100
MAX_CREATED = 2**63 - 1  # BIGINT
# Stripe's events are a few levels deep (event → data → object → a nested object or
# list → its fields); this leaves room for any of them and stays far from the parser's
# recursion limit (about 1,000).
MAX_EVENT_DEPTH = 64
# JSONB holds much longer numbers; Python refuses to parse more than 4,300 digits anyway.
MAX_INTEGER_DIGITS = 1000
REPLACEMENT = "\ufffd"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnstorableEvent(ValueError):
    """A body that no delivery can make storable: `field` says where, `reason` what."""

    def __init__(self, field: str, reason: str, event_id: object = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class EventBody:
    id: str
    type: str
    created: int | None
    payload: dict[str, Any]
    replaced: int  # characters replaced by U+FFFD


class _NotANumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotANumber(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotANumber("a number beyond a double")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NotANumber(f"an integer of more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _key(field: str, value: object, limit: int, event_id: object) -> str:
    """The event's id or type, which the inbox keeps in a column as it is."""
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise UnstorableEvent(field, f"must be a string of 1 to {limit} characters", event_id)
    if _UNSTORABLE.search(value):
        raise UnstorableEvent(field, "must not contain NUL or lone surrogates", event_id)
    return value


def _storable(value: Any, depth: int) -> tuple[Any, int]:
    """`value` with unstorable characters replaced, and how many were. Recursion stops
    at MAX_EVENT_DEPTH: deeper is refused."""
    if isinstance(value, str):
        return _UNSTORABLE.subn(REPLACEMENT, value)
    if not isinstance(value, dict | list):
        return value, 0
    if depth >= MAX_EVENT_DEPTH:
        raise UnstorableEvent("body", f"nested deeper than {MAX_EVENT_DEPTH} levels")
    replaced = 0
    if isinstance(value, list):
        items = []
        for item in value:
            clean, count = _storable(item, depth + 1)
            items.append(clean)
            replaced += count
        return items, replaced
    fields = {}
    for key, item in value.items():
        clean_key, key_count = _UNSTORABLE.subn(REPLACEMENT, key)
        clean, count = _storable(item, depth + 1)
        fields[clean_key] = clean
        replaced += key_count + count
    return fields, replaced


def parse_event(text: str) -> EventBody:
    """The event as the inbox stores it, or UnstorableEvent."""
    try:
        payload = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
        )
    except RecursionError:
        raise UnstorableEvent("body", f"nested deeper than {MAX_EVENT_DEPTH} levels") from None
    except _NotANumber as exc:
        raise UnstorableEvent("body", str(exc)) from None
    except ValueError:
        raise UnstorableEvent("body", "not valid JSON") from None
    if not isinstance(payload, dict):
        raise UnstorableEvent("body", "not a Stripe event object")
    event_id = _key("id", payload.get("id"), EVENT_ID_MAX_LENGTH, payload.get("id"))
    event_type = _key("type", payload.get("type"), EVENT_TYPE_MAX_LENGTH, event_id)
    created = payload.get("created")
    # bool is an int to Python, not to Stripe.
    if created is not None and (type(created) is not int or not 0 <= created <= MAX_CREATED):
        raise UnstorableEvent("created", "must be a Unix time (an integer, 0 to 2^63-1)", event_id)
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise UnstorableEvent("data", "must be an object with an `object` object", event_id)
    try:
        clean, replaced = _storable(payload, 0)
    except UnstorableEvent as exc:
        raise UnstorableEvent(exc.field, exc.reason, event_id) from None
    return EventBody(event_id, event_type, created, clean, replaced)
