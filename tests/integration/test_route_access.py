"""Every route the app serves × every kind of caller, over HTTP, against a table written
out here (not read from the code): who gets through, who gets 401, who gets 403.

`EXPECTED` names each route's rule. A route the app serves that is not in it fails
`test_every_route_is_in_the_table` (and its own case), so a new route is added here — with
the rule it should have — before it can pass; a route whose declared rule differs fails
`test_the_declared_rules_are_the_expected_ones`; a route that declares the right rule but
does not apply it to its resource's owner (a booking's artist, the client a booking is for)
fails its case, because "the other artist" / "the other client" gets through. A route
with no rule at all never gets this far: the app refuses to start (test_openapi).

Callers with AUTH_JWT_SECRET set: the operator, the owning artist, another artist, the
owning client, another client, nobody, and tokens that are not valid (malformed, expired,
signed with another secret, of an unknown role). Without it: the operator, nobody, and
an artist's or a client's JWT (ignored: the client endpoints are open, as the contract
says). A refused request changes nothing in the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
from flask import Flask
from sqlalchemy import text

from services.api.openapi import access_rules, document_app
from shared.adapters.db import Base, transaction
from shared.domain.access import Access
from shared.usecases import catalog
from tests import support
from tests.factories import make_world

PUBLIC, CLIENT, ARTIST, OPERATOR = Access.PUBLIC, Access.CLIENT, Access.ARTIST, Access.OPERATOR
SECRET = "route-access-test-jwt-secret-".ljust(64, "s")
OTHER_SECRET = "not-the-servers-jwt-secret-".ljust(64, "o")
PARIS = ZoneInfo("Europe/Paris")

# The rule each route should have: (method, Flask rule) -> access.
EXPECTED: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/docs/"): PUBLIC,
    ("GET", "/docs/<path:path>"): PUBLIC,
    ("POST", "/api/webhooks/stripe"): PUBLIC,
    ("POST", "/api/availability"): CLIENT,
    ("POST", "/api/bookings/create"): CLIENT,
    ("GET", "/api/bookings/<booking_id>"): CLIENT,
    ("POST", "/api/bookings/<booking_id>/cancel"): CLIENT,
    ("POST", "/api/bookings/<booking_id>/reschedule"): CLIENT,
    ("GET", "/api/clients/<client_id>/bookings"): CLIENT,
    ("POST", "/api/admin/clients"): OPERATOR,
    ("GET", "/api/admin/clients"): OPERATOR,
    ("GET", "/api/admin/clients/<client_id>"): OPERATOR,
    ("PATCH", "/api/admin/clients/<client_id>"): OPERATOR,
    ("POST", "/api/admin/artists"): OPERATOR,
    ("GET", "/api/admin/artists"): OPERATOR,
    ("GET", "/api/admin/artists/<artist_id>"): ARTIST,
    ("PATCH", "/api/admin/artists/<artist_id>"): ARTIST,
    ("POST", "/api/admin/artists/<artist_id>/services"): ARTIST,
    ("GET", "/api/admin/artists/<artist_id>/services"): ARTIST,
    ("PATCH", "/api/admin/artists/<artist_id>/services/<service_id>"): ARTIST,
    ("DELETE", "/api/admin/artists/<artist_id>/services/<service_id>"): ARTIST,
    ("PUT", "/api/admin/artists/<artist_id>/working-hours"): ARTIST,
    ("GET", "/api/admin/artists/<artist_id>/working-hours"): ARTIST,
    ("POST", "/api/admin/artists/<artist_id>/leaves"): ARTIST,
    ("GET", "/api/admin/artists/<artist_id>/leaves"): ARTIST,
    ("DELETE", "/api/admin/artists/<artist_id>/leaves/<leave_id>"): ARTIST,
    ("GET", "/api/admin/artists/<artist_id>/bookings"): ARTIST,
    ("GET", "/api/admin/bookings"): ARTIST,
    ("GET", "/api/admin/bookings/<booking_id>"): ARTIST,
    ("POST", "/api/admin/bookings/<booking_id>/cancel"): ARTIST,
    ("POST", "/api/admin/bookings/<booking_id>/complete"): ARTIST,
    ("POST", "/api/admin/bookings/<booking_id>/no-show"): ARTIST,
    ("POST", "/api/admin/artists/<artist_id>/calendar-token"): ARTIST,
    ("POST", "/api/admin/artists/<artist_id>/stripe/onboarding"): ARTIST,
    ("POST", "/api/admin/artists/<artist_id>/stripe/dashboard"): ARTIST,
    ("GET", "/api/calendar/<token>.ics"): PUBLIC,
    # The web pages (services/api/pages) read no bearer token: public, or opened by the
    # signed session cookie they check themselves (tests/integration/test_pages.py).
    ("GET", "/static/<path:filename>"): PUBLIC,
    ("GET", "/book/<artist_id>"): PUBLIC,
    ("POST", "/book/<artist_id>"): PUBLIC,
    ("GET", "/booking/<booking_id>"): PUBLIC,
    ("GET", "/booking/<booking_id>/status"): PUBLIC,
    ("POST", "/booking/<booking_id>/cancel"): PUBLIC,
    ("POST", "/booking/<booking_id>/reschedule"): PUBLIC,
    # The dashboard: each page checks its session and the artist it is about
    # (tests/integration/test_dashboard_pages.py); without one it redirects to sign-in.
    ("GET", "/dashboard"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/calendar"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/hours"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/leaves"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/payments"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/policy"): PUBLIC,
    ("GET", "/dashboard/artists/<artist_id>/services"): PUBLIC,
    ("GET", "/dashboard/signin"): PUBLIC,
    ("GET", "/dashboard/signin/<token>"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/bookings/<booking_id>/cancel"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/bookings/<booking_id>/complete"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/bookings/<booking_id>/no-show"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/calendar/rotate"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/hours"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/leaves"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/leaves/<leave_id>/delete"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/payments/dashboard"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/payments/onboarding"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/policy"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/services"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/services/<service_id>"): PUBLIC,
    ("POST", "/dashboard/artists/<artist_id>/services/<service_id>/remove"): PUBLIC,
    ("POST", "/dashboard/signin"): PUBLIC,
    ("POST", "/dashboard/signin/<token>"): PUBLIC,
    ("POST", "/dashboard/signin/operator"): PUBLIC,
    ("POST", "/dashboard/signout"): PUBLIC,
}
# Pages opened by the signed session cookie alone (or the e-mail's signed link, which
# sets it): no bearer token opens them, so every caller of the tables below — none has
# that session — is refused with an HTML page (403; a POST without its CSRF token 400)
# and changes nothing.
SESSION_PAGES = {
    ("GET", "/booking/<booking_id>"),
    ("GET", "/booking/<booking_id>/status"),
    ("POST", "/booking/<booking_id>/cancel"),
    ("POST", "/booking/<booking_id>/reschedule"),
}

# artist, client: A and C, who own the route's resource; artist-B, client-D: others.
# ok: gets through (any answer but 401/403, never a 5xx); 401/403: refused so.
WITH_CLIENT_JWTS = """
         operator artist artist-B client client-D anonymous malformed expired wrong-key bad-role
PUBLIC   ok       ok     ok       ok     ok       ok        ok        ok      ok        ok
CLIENT   ok       403    403      ok     403      401       401       401     401       401
ARTIST   ok       ok     403      403    403      401       401       401     401       401
OPERATOR ok       403    403      403    403      401       401       401     401       401
"""
# AUTH_JWT_SECRET unset: JWTs cannot be verified and are ignored (the caller is a guest).
WITHOUT_CLIENT_JWTS = """
         operator anonymous artist-jwt client-jwt
PUBLIC   ok       ok        ok         ok
CLIENT   ok       ok        ok         ok
ARTIST   ok       401       401        401
OPERATOR ok       401       401        401
"""


def parse(table: str) -> tuple[list[str], dict[tuple[Access, str], str]]:
    header, *rows = (line.split() for line in table.strip().splitlines())
    expected = {}
    for access, *outcomes in rows:
        for name, outcome in zip(header, outcomes, strict=True):
            expected[(Access[access], name)] = outcome
    assert {a for a, _ in expected} == set(Access)
    return header, expected


def served_routes() -> list[tuple[str, str]]:
    app = document_app()
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    )


ROUTES = served_routes()


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    """Artist A (service, hours, a leave) with its client C and a CONFIRMED booking of C
    with A; artist B and client D, who own none of it."""

    artist: str
    service: str
    leave: str
    client: str
    booking: str
    other_artist: str
    other_client: str


def local(days: int, hour: int) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)


def build_world(sessions: Any, operator_http: Any) -> World:
    mine = make_world(sessions, deposit="0.00")  # a deposit of 0 confirms at once
    other = make_world(sessions)
    with transaction(sessions) as session:
        leave = catalog.add_leave(
            session, mine.artist_id, start=local(200, 10), end=local(200, 12), reason=None
        )
        leave_id = str(leave.id)
    created = operator_http.post(
        "/api/bookings/create",
        json=booking_body(mine.client_id, mine.artist_id, mine.service_id, local(3, 11)),
        headers=bearer(support.ADMIN_TOKEN),
    )
    assert created.status_code == 201, created.json
    assert created.json["booking"]["status"] == "CONFIRMED"
    return World(
        artist=mine.artist_id,
        service=mine.service_id,
        leave=leave_id,
        client=mine.client_id,
        booking=created.json["booking"]["id"],
        other_artist=other.artist_id,
        other_client=other.client_id,
    )


def booking_body(client: str, artist: str, service: str, start: datetime) -> dict[str, str]:
    return {
        "clientId": client,
        "artistId": artist,
        "serviceId": service,
        "startTime": start.isoformat(),
    }


# --------------------------------------------------------------------------- callers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_for(sub: str, *, role: str | None = None, secret: str = SECRET, minutes: int = 10) -> str:
    claims: dict[str, object] = {"sub": sub, "exp": datetime.now(UTC) + timedelta(minutes=minutes)}
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256")


def callers(world: World) -> dict[str, dict[str, str]]:
    return {
        "operator": bearer(support.ADMIN_TOKEN),
        "artist": bearer(jwt_for(world.artist, role="artist")),
        "artist-B": bearer(jwt_for(world.other_artist, role="artist")),
        "client": bearer(jwt_for(world.client, role="client")),
        "client-D": bearer(jwt_for(world.other_client)),  # no role: a client
        "anonymous": {},
        "malformed": bearer("not.a-jwt"),
        "expired": bearer(jwt_for(world.artist, role="artist", minutes=-5)),
        "wrong-key": bearer(jwt_for(world.artist, role="artist", secret=OTHER_SECRET)),
        "bad-role": bearer(jwt_for(world.artist, role="operator")),
        "artist-jwt": bearer(jwt_for(world.artist, role="artist")),
        "client-jwt": bearer(jwt_for(world.client)),
    }


# --------------------------------------------------------------------------- requests


def request_for(
    method: str, rule: str, world: World, *, client_jwts: bool
) -> tuple[str, dict[str, str], Any]:
    """The path (A's ids), query and body that would succeed for whoever may call the
    route, so that what refuses a caller is the rule, never the input."""
    path = (
        rule.replace("<artist_id>", world.artist)
        .replace("<client_id>", world.client)
        .replace("<booking_id>", world.booking)
        .replace("<service_id>", world.service)
        .replace("<leave_id>", world.leave)
        .replace("<path:path>", "index.css")
        .replace("<path:filename>", "inkflow.css")
    )
    tag = uuid.uuid4().hex[:8]
    # Without client JWTs the body names the acting client (the contract's open mode).
    acting = {} if client_jwts else {"clientId": world.client}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/availability"): {
            "artistId": world.artist,
            "serviceId": world.service,
            "startDate": local(5, 0).isoformat(),
            "endDate": local(6, 0).isoformat(),
        },
        ("POST", "/api/bookings/create"): booking_body(
            world.client, world.artist, world.service, local(5, 11)
        ),
        ("POST", "/api/bookings/<booking_id>/cancel"): {"reason": "table", **acting},
        ("POST", "/api/bookings/<booking_id>/reschedule"): {
            "startTime": local(6, 14).isoformat(),
            **acting,
        },
        ("POST", "/api/webhooks/stripe"): {"id": "evt_x", "type": "ping"},
        ("POST", "/api/admin/clients"): {"email": f"c-{tag}@example.com", "name": "C"},
        ("PATCH", "/api/admin/clients/<client_id>"): {"name": f"Client {tag}"},
        ("POST", "/api/admin/artists"): {
            "name": "New",
            "email": f"a-{tag}@example.com",
            "timezone": "Europe/Paris",
        },
        ("PATCH", "/api/admin/artists/<artist_id>"): {"name": f"Artist {tag}", "bufferMin": 5},
        ("POST", "/api/admin/artists/<artist_id>/services"): {
            "name": "Flash",
            "durationMin": 60,
            "price": "100.00",
            "depositAmount": "0.00",
            "currency": "eur",
        },
        ("PATCH", "/api/admin/artists/<artist_id>/services/<service_id>"): {"name": f"S {tag}"},
        ("PUT", "/api/admin/artists/<artist_id>/working-hours"): [
            {"dayOfWeek": d, "startTime": "10:00", "endTime": "18:00"} for d in range(7)
        ],
        ("POST", "/api/admin/artists/<artist_id>/leaves"): {
            "startTime": local(300 + len(tag) % 7, 10).isoformat(),
            "endTime": local(300 + len(tag) % 7, 11).isoformat(),
        },
        ("POST", "/api/admin/bookings/<booking_id>/cancel"): {"reason": "table"},
    }
    queries = {
        # Filtered on A's bookings: the other artist asks for what is not theirs.
        ("GET", "/api/admin/bookings"): {"artistId": world.artist},
    }
    return path, queries.get((method, rule), {}), bodies.get((method, rule))


def database_fingerprint(engine: Any) -> str:
    """Every row of every table, hashed: equal before and after means nothing changed."""
    digest = "(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t)"
    # The table names are our own metadata's, not input.
    parts = [digest.format(table.name) for table in Base.metadata.sorted_tables]
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT " + " || ".join(parts))).scalar_one())


# Routes whose resource belongs to nobody in particular: availability (any client may
# ask about any artist). There "the other client" is as good as the owner.
UNOWNED = {("POST", "/api/availability")}
OWNER_OF = {"artist-B": "artist", "client-D": "client"}


def check_route(
    app: Flask, world: World, method: str, rule: str, table: str, *, client_jwts: bool
) -> int:
    """Call the route as each caller of `table`; returns how many calls were checked."""
    header, expected = parse(table)
    access = EXPECTED[(method, rule)]
    http = app.test_client()
    engine = app.extensions["inkflow"].resources.engine
    heads = callers(world)
    failures = []
    for name in header:
        path, query, body = request_for(method, rule, world, client_jwts=client_jwts)
        owner_like = OWNER_OF.get(name, name) if (method, rule) in UNOWNED else name
        want = "page" if (method, rule) in SESSION_PAGES else expected[(access, owner_like)]
        before = database_fingerprint(engine) if want != "ok" else None
        kwargs: dict[str, Any] = {"headers": heads[name]}
        if body is not None:
            kwargs["json"] = body
        answer = http.open(path, method=method, query_string=query, **kwargs)
        answer.close()  # a file sent from a package (the API reference's assets)
        got = str(answer.status_code)
        if want == "page":
            if (got not in ("400", "403")) or answer.mimetype != "text/html":
                failures.append(f"{name}: expected an HTML 403 (or 400), got {got}")
            elif database_fingerprint(engine) != before:
                failures.append(f"{name}: refused ({got}) but the database changed")
        elif want == "ok":
            if answer.status_code in (401, 403) or answer.status_code >= 500:
                said = answer.get_data(as_text=True)[:200]
                failures.append(f"{name}: expected to get through, got {got} {said}")
        else:
            error = (answer.json or {}).get("error") if answer.is_json else None
            code = {"401": "UNAUTHORIZED", "403": "FORBIDDEN"}[want]
            if (got, error) != (want, code):
                failures.append(f"{name}: expected {want} {code}, got {got} {error}")
            elif database_fingerprint(engine) != before:
                failures.append(f"{name}: refused ({got}) but the database changed")
    assert not failures, f"{method} {rule} ({access.name}):\n  " + "\n  ".join(failures)
    return len(header)


# --------------------------------------------------------------------------- tests


def test_every_route_is_in_the_table() -> None:
    missing = [f"{m} {r}" for m, r in ROUTES if (m, r) not in EXPECTED]
    assert not missing, "routes without an expected rule (add them to EXPECTED): " + ", ".join(
        missing
    )
    gone = [f"{m} {r}" for m, r in EXPECTED if (m, r) not in ROUTES]
    assert not gone, "EXPECTED names routes the app no longer serves: " + ", ".join(gone)


def test_the_declared_rules_are_the_expected_ones() -> None:
    app = document_app()
    rules = access_rules(app)
    declared = {
        (method, rule.rule): rules[rule.endpoint]
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    differ = {
        route: (declared[route].name, want.name)
        for route, want in EXPECTED.items()
        if declared.get(route) != want
    }
    assert not differ, f"declared vs expected: {differ}"


@pytest.fixture
def apps(make_app: Callable[..., Flask]) -> tuple[Flask, Flask]:
    return make_app(auth_jwt_secret=SECRET), make_app()


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_route_by_caller(apps: tuple[Flask, Flask], sessions: Any, method: str, rule: str) -> None:
    assert (method, rule) in EXPECTED, f"{method} {rule}: no expected rule (add it to EXPECTED)"
    with_jwts, without = apps
    world = build_world(sessions, with_jwts.test_client())
    check_route(with_jwts, world, method, rule, WITH_CLIENT_JWTS, client_jwts=True)
    check_route(without, world, method, rule, WITHOUT_CLIENT_JWTS, client_jwts=False)


def test_the_table_size() -> None:
    with_jwts = len(parse(WITH_CLIENT_JWTS)[0])
    without = len(parse(WITHOUT_CLIENT_JWTS)[0])
    assert (len(ROUTES), with_jwts, without) == (74, 10, 4)
    assert len(ROUTES) * (with_jwts + without) == 1036
