"""Correctly signed webhook bodies that Stripe would never send: each either is stored and
acknowledged (2xx), or is refused for good (4xx) and logged with its event id — never a
5xx, which Stripe would retry for three days while the payment is never applied.

Which one (docs/webhooks.md, "Bodies Stripe never sends"): NUL and lone surrogates inside
strings are replaced by U+FFFD and the event is stored; an id or type the inbox cannot key
on, a `created` that is no Unix time, nesting deeper than MAX_EVENT_DEPTH and numbers that
are not finite are refused with VALIDATION_ERROR naming the field.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from shared.adapters.db import transaction
from shared.adapters.models import StripeEvent
from shared.usecases.inbox import MAX_EVENT_DEPTH
from tests import support
from tests.fakes.queue import RecordingQueue

PATH = "/api/webhooks/stripe"
INBOX_LOG = "inkflow.inbox"


def signed(body: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body, support.WEBHOOK_SECRET, timestamp=int(time.time())
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def event(event_id: str = "evt_1Bodies", **fields: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_767_225_600,
        "data": {"object": {"id": "pi_1Bodies", "object": "payment_intent", "metadata": {}}},
        **fields,
    }


def stored(sessions: sessionmaker[Session]) -> list[StripeEvent]:
    with transaction(sessions) as session:
        return list(session.scalars(select(StripeEvent)))


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def app(make_app: Callable[..., Flask], queue: RecordingQueue) -> Flask:
    return make_app(queue=queue)


def post(app: Flask, body: str) -> Any:
    return app.test_client().post(PATH, data=body.encode(), headers=signed(body))


# --------------------------------------------------------------------------- stored, 200


@pytest.mark.parametrize(
    ("escape", "stands_for"),
    [
        ("\\u0000", "NUL (JSONB refuses it)"),
        ("\\ud800", "a lone high surrogate (not UTF-8)"),
        ("\\udc00", "a lone low surrogate"),
    ],
)
def test_unstorable_characters_are_replaced_and_the_event_is_stored(
    app: Flask,
    queue: RecordingQueue,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    escape: str,
    stands_for: str,
) -> None:
    body = json.dumps(event(data={"object": {"id": "pi_1", "description": "x"}}))
    body = body.replace('"x"', f'"a{escape}b"').replace('"id": "pi_1"', f'"i{escape}d": "pi_1"')
    assert escape in body

    with caplog.at_level(logging.WARNING, logger=INBOX_LOG):
        response = post(app, body)

    assert response.status_code == 200, stands_for
    [row] = stored(sessions)
    assert row.id == "evt_1Bodies"
    assert row.payload["data"]["object"] == {"i\ufffdd": "pi_1", "description": "a\ufffdb"}
    assert queue.sent  # applied like any other event
    [record] = [r for r in caplog.records if r.name == INBOX_LOG]
    assert "evt_1Bodies" in record.getMessage()
    assert "2 characters" in record.getMessage()


def test_a_proper_surrogate_pair_is_kept(app: Flask, sessions: sessionmaker[Session]) -> None:
    body = json.dumps(event(data={"object": {"description": "\U0001f409"}}))  # ensure_ascii
    assert "\\ud83d\\udc09" in body
    assert post(app, body).status_code == 200
    [row] = stored(sessions)
    assert row.payload["data"]["object"]["description"] == "\U0001f409"


def test_an_event_nested_up_to_the_limit_is_stored(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    # The event, its `data` and `data.object` are three levels; the lists make up the rest.
    inner: Any = "deep"
    for _ in range(MAX_EVENT_DEPTH - 3):
        inner = [inner]
    assert post(app, json.dumps(event(data={"object": {"x": inner}}))).status_code == 200
    assert len(stored(sessions)) == 1


def test_big_integers_that_postgresql_can_hold_are_stored(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    body = json.dumps(event(data={"object": {"amount": 2**200, "fee": -(10**40)}}))
    assert post(app, body).status_code == 200
    [row] = stored(sessions)
    assert row.payload["data"]["object"] == {"amount": 2**200, "fee": -(10**40)}


def test_created_may_be_absent_or_null(app: Flask, sessions: sessionmaker[Session]) -> None:
    absent = event("evt_1NoCreated")
    del absent["created"]
    assert post(app, json.dumps(absent)).status_code == 200
    assert post(app, json.dumps(event("evt_1NullCreated", created=None))).status_code == 200
    assert {row.id: row.stripe_created for row in stored(sessions)} == {
        "evt_1NoCreated": None,
        "evt_1NullCreated": None,
    }


# --------------------------------------------------------------------------- refused, 400


def _nested(levels: int) -> str:
    """An event whose data.object.x is `levels` lists deep (3 + levels in all)."""
    nested = "[" * levels + "]" * levels
    return json.dumps(event(data={"object": {"x": None}})).replace("null", nested)


def _with_raw(field: str) -> str:
    """An event with a field written as raw JSON text (json.dumps cannot write it)."""
    return json.dumps(event(extra="RAW")).replace('"RAW"', field)


REFUSED = {
    "id of 256 characters": (json.dumps(event("e" * 256)), "id"),
    "empty id": (json.dumps(event("")), "id"),
    "id not a string": (json.dumps(event(7)), "id"),  # type: ignore[arg-type]
    "NUL in the id": (json.dumps(event("evt_\u0000")), "id"),
    "lone surrogate in the id": (json.dumps(event("evt_x")).replace("evt_x", "evt_\\udfff"), "id"),
    "type of 101 characters": (json.dumps(event(type="t" * 101)), "type"),
    "NUL in the type": (json.dumps(event(type="charge.\u0000")), "type"),
    "created = 2^63": (json.dumps(event(created=2**63)), "created"),
    "created = 2^64": (json.dumps(event(created=2**64)), "created"),
    "negative created": (json.dumps(event(created=-1)), "created"),
    "created true": (json.dumps(event(created=True)), "created"),
    "created as text": (json.dumps(event(created="1767225600")), "created"),
    "created as a float": (json.dumps(event(created=1.5)), "created"),
    "2,000 levels deep": (_nested(2000), "body"),
    "one level too deep": (_nested(MAX_EVENT_DEPTH - 2), "body"),
    "no data": (json.dumps({k: v for k, v in event().items() if k != "data"}), "data"),
    "data.object not an object": (json.dumps(event(data={"object": [1]})), "data"),
    "data not an object": (json.dumps(event(data="x")), "data"),
    "NaN": (_with_raw("NaN"), "body"),
    "Infinity": (_with_raw("-Infinity"), "body"),
    "a number beyond a double": (_with_raw("1e400"), "body"),
    "an integer of 5,000 digits": (_with_raw("9" * 5000), "body"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_signed_bodies_that_can_never_be_stored_are_refused_for_good_and_logged(
    app: Flask,
    queue: RecordingQueue,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    body, field = REFUSED[case]

    with caplog.at_level(logging.WARNING, logger=INBOX_LOG):
        response = post(app, body)

    assert response.status_code == 400, response.get_data()
    assert response.json is not None
    assert response.json["error"] == "VALIDATION_ERROR"
    assert field in response.json["details"]["fields"]
    assert stored(sessions) == []
    assert queue.sent == []
    [record] = [r for r in caplog.records if r.name == INBOX_LOG]
    assert record.levelno == logging.WARNING
    # Logged with the event id when there is a usable one (shortened and quoted: it is
    # untrusted text).
    message = record.getMessage()
    if field not in ("id", "body"):
        assert "'evt_1Bodies'" in message
    assert len(message) < 600


# --------------------------------------------------------------------------- any body

# Any JSON value, any string content (all of Unicode, lone surrogates included, and NUL
# and surrogates more often than chance would draw them), deep nesting, any integer.
_CHARACTERS = st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff"])
_TEXT = st.text(_CHARACTERS, max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _deep(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


EVENTS = st.fixed_dictionaries(
    {
        "id": st.one_of(_TEXT, st.just("evt_1Property"), st.text(min_size=250, max_size=300)),
        "type": st.one_of(_TEXT, st.sampled_from(["payment_intent.succeeded", "x" * 101])),
        "data": st.fixed_dictionaries(
            {"object": st.dictionaries(_TEXT, JSON_VALUES, max_size=4) | JSON_VALUES}
        ),
    },
    optional={
        "created": st.one_of(JSON_VALUES, st.integers(min_value=2**62, max_value=2**65)),
        "extra": st.builds(_deep, JSON_VALUES, st.sampled_from([1, 50, MAX_EVENT_DEPTH, 1500])),
    },
)
BODIES = st.one_of(EVENTS, JSON_VALUES)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=BODIES, ascii_only=st.booleans())
def test_any_signed_body_is_stored_and_acknowledged_or_refused_and_logged_never_a_5xx(
    app: Flask,
    queue: RecordingQueue,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    payload: Any,
    ascii_only: bool,
) -> None:
    try:
        body = json.dumps(payload, ensure_ascii=ascii_only)
        body.encode()
    except UnicodeEncodeError:
        body = json.dumps(payload)  # a lone surrogate is only sent escaped
    with transaction(sessions) as session:
        session.execute(delete(StripeEvent))
    queue.sent.clear()
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger=INBOX_LOG):
        response = post(app, body)

    assert response.status_code < 500, response.get_data()[:300]
    hypothesis_event(f"answered {response.status_code}")
    rows = stored(sessions)
    if response.status_code == 200:
        [row] = rows
        assert row.id == payload["id"]
        assert row.type == payload["type"]
    else:
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"] == "VALIDATION_ERROR"
        assert rows == []
        assert queue.sent == []
        assert [r for r in caplog.records if r.name == INBOX_LOG], "a refusal is logged"
