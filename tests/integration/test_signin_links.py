"""The dashboard's magic links, on the real database and a real SMTP peer: one link per
request, mailed by the worker's use case, opening one session within 15 minutes."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.adapters.db import transaction
from shared.adapters.models import Artist, SigninLink
from shared.adapters.runtime import Resources, build_resources
from shared.config import Settings
from shared.domain import signin as rules
from shared.tasks import SEND_SIGNIN_LINK
from shared.usecases import signin
from tests.factories import make_world
from tests.fakes.smtp_sink import SmtpSink

SECRET = "a-web-secret-key-of-at-least-32-bytes!"
NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LINK = re.compile(r"(http://\S+/dashboard/signin/(\S+))")


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def resources(settings: Settings, sink: SmtpSink) -> Iterator[Resources]:
    sink.clear()
    built = build_resources(
        replace(settings, smtp_url=sink.url, public_base_url="http://dash.test"), pool_size=4
    )
    yield built
    built.close()


def _artist(resources: Resources) -> tuple[uuid.UUID, str]:
    world = make_world(resources.sessions)
    with transaction(resources.sessions) as session:
        artist = session.get(Artist, uuid.UUID(world.artist_id))
        assert artist is not None
        return artist.id, artist.email


def _ask(resources: Resources, email: str, now: datetime = NOW) -> list[Any]:
    with transaction(resources.sessions) as session:
        effects = signin.request_link(session, email, now=now)
    return list(effects.tasks)


def _mailed_token(resources: Resources, sink: SmtpSink, email: str, now: datetime = NOW) -> str:
    """Ask for a link, run the worker's task, read the token out of the e-mail."""
    count = len(sink.messages)
    tasks = _ask(resources, email, now)
    assert [name for name, _ in tasks] == [SEND_SIGNIN_LINK]
    (link_id,) = tasks[0][1]
    assert signin.send_link(resources, SECRET, uuid.UUID(link_id), now=now) == "sent"
    message = sink.wait_for(count + 1)[-1]
    assert message.to == email.strip().lower()  # the stored address
    assert message.text is not None
    match = LINK.search(message.text)
    assert match is not None, message.text
    assert match.group(1).startswith("http://dash.test/dashboard/signin/")
    assert match.group(1) in (message.html or "")
    return match.group(2)


def _redeem(resources: Resources, token: str, now: datetime) -> uuid.UUID:
    with transaction(resources.sessions) as session:
        return signin.redeem(session, SECRET, token, now=now)


def test_a_link_opens_one_session_for_its_artist(resources: Resources, sink: SmtpSink) -> None:
    artist_id, email = _artist(resources)
    token = _mailed_token(resources, sink, email)
    message = sink.messages[-1]
    assert message.subject == "Your inkflow sign-in link"
    assert "11:15 (Europe/Paris)" in (message.text or "")  # 15 minutes, in the artist's zone

    assert _redeem(resources, token, NOW + timedelta(minutes=14)) == artist_id
    with pytest.raises(signin.LinkRefused):
        _redeem(resources, token, NOW + timedelta(minutes=14))  # reused


def test_the_address_is_matched_whatever_its_case(resources: Resources, sink: SmtpSink) -> None:
    artist_id, email = _artist(resources)
    token = _mailed_token(resources, sink, f"  {email.upper()} ")
    assert _redeem(resources, token, NOW) == artist_id


def test_an_unknown_address_gets_nothing(resources: Resources) -> None:
    _artist(resources)
    assert _ask(resources, "nobody@example.com") == []
    with transaction(resources.sessions) as session:
        assert session.scalar(select(func.count()).select_from(SigninLink)) == 0


def test_an_expired_link_is_refused_and_not_sent(resources: Resources, sink: SmtpSink) -> None:
    _, email = _artist(resources)
    token = _mailed_token(resources, sink, email)
    with pytest.raises(signin.LinkRefused):
        _redeem(resources, token, NOW + rules.LINK_LIFETIME)
    # A send task that runs after the link expired has nothing to send.
    ((_, (link_id,)),) = _ask(resources, email, NOW)
    late = NOW + rules.LINK_LIFETIME + timedelta(seconds=1)
    assert signin.send_link(resources, SECRET, uuid.UUID(link_id), now=late) == "skipped"


def test_a_tampered_or_foreign_link_is_refused(resources: Resources, sink: SmtpSink) -> None:
    _, email = _artist(resources)
    token = _mailed_token(resources, sink, email)
    payload, _, signature = token.rpartition(".")
    # The first character: the last one's low bits are base64 padding, ignored on decoding.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = signin.sign("another-key-that-is-also-32-bytes-long", uuid.UUID(int=1))
    for bad in (f"{payload}.{flipped}", forged, "x", "", "a.b.c", token + "x"):
        with pytest.raises(signin.LinkRefused):
            _redeem(resources, bad, NOW)
    # An id signed with the right key but never issued opens nothing either.
    with pytest.raises(signin.LinkRefused):
        _redeem(resources, signin.sign(SECRET, uuid.uuid4()), NOW)
    # The genuine link still works: refusals used nothing up.
    assert _redeem(resources, token, NOW)


def test_each_artists_link_opens_only_that_artist(resources: Resources, sink: SmtpSink) -> None:
    first_id, first_email = _artist(resources)
    second_id, second_email = _artist(resources)
    first = _mailed_token(resources, sink, first_email)
    second = _mailed_token(resources, sink, second_email)
    assert _redeem(resources, second, NOW) == second_id
    assert _redeem(resources, first, NOW) == first_id


def test_links_per_address_are_rate_limited(resources: Resources) -> None:
    _, email = _artist(resources)
    for n in range(rules.LINKS_PER_WINDOW):
        assert len(_ask(resources, email, NOW + timedelta(minutes=n))) == 1
    assert _ask(resources, email, NOW + timedelta(minutes=5)) == []
    # Once the first ones are out of the window, a link is sent again.
    assert len(_ask(resources, email, NOW + rules.RATE_WINDOW + timedelta(minutes=1))) == 1


def test_concurrent_requests_do_not_pass_the_limit_together(resources: Resources) -> None:
    _, email = _artist(resources)
    barrier = threading.Barrier(8)
    issued: list[int] = []

    def ask() -> None:
        barrier.wait()
        issued.append(len(_ask(resources, email)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(issued) == rules.LINKS_PER_WINDOW


def test_two_concurrent_redemptions_open_one_session(resources: Resources, sink: SmtpSink) -> None:
    artist_id, email = _artist(resources)
    token = _mailed_token(resources, sink, email)
    barrier = threading.Barrier(8)
    opened: list[uuid.UUID] = []
    refused: list[str] = []

    def click() -> None:
        barrier.wait()
        try:
            opened.append(_redeem(resources, token, NOW))
        except signin.LinkRefused as refusal:
            refused.append(str(refusal))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert opened == [artist_id]
    assert len(refused) == 7


@pytest.mark.parametrize("environment", ["development", "production"])
def test_without_smtp_the_link_reaches_the_console_in_development_only(
    settings: Settings, caplog: pytest.LogCaptureFixture, environment: str
) -> None:
    """`make run` has no mailbox: the developer reads the link in its console. Outside
    development a link is a credential that no log line at INFO may carry."""
    console = build_resources(
        replace(
            settings, smtp_url=None, public_base_url="http://dash.test", environment=environment
        ),
        pool_size=2,
    )
    try:
        _, email = _artist(console)
        (link_id,) = _ask(console, email)[0][1]
        with caplog.at_level("INFO"):
            assert signin.send_link(console, SECRET, uuid.UUID(link_id), now=NOW) == "sent"
        shown = [r.getMessage() for r in caplog.records if "/dashboard/signin/" in r.getMessage()]
        if environment == "development":
            assert len(shown) == 1
            token = shown[0].rsplit("/", 1)[-1]
            with transaction(console.sessions) as session:
                assert signin.redeem(session, SECRET, token, now=NOW)
        else:
            assert shown == []
    finally:
        console.close()
