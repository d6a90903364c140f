"""The schemathesis configuration of a run (`schemathesis.toml`), written for the data the
run seeded: its ids and sane timestamps as dictionaries that generated requests draw from
(schemathesis keeps positive cases valid and negative ones invalid when it does), and
what the checks expect of this API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.fuzz.seed import Seed

# How often a generated id or timestamp is replaced by one of the seed's: most requests
# should reach the code behind a lookup, some should still name nothing.
ID_PROBABILITY = 0.8
TIME_PROBABILITY = 0.9

# Positive data (valid by the schema) may still break a rule the schema cannot express:
# an unknown time zone, endDate before startDate, a deposit above the price, an email in
# use, a timestamp outside the supported range … all documented VALIDATION_ERRORs (400),
# as are NOT_FOUND, the 409s of the booking rules, 413 and 422 STRIPE_NOT_CONFIGURED;
# 3xx: the calendar feed's 304 Not Modified.
POSITIVE_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "422", "429"]


def _instants(days: range) -> list[str]:
    """Instants on the hour and half hour of these days from now, in several offsets."""
    zones = [ZoneInfo("Europe/Paris"), ZoneInfo("Asia/Tokyo"), ZoneInfo("UTC")]
    today = datetime.now(ZoneInfo("UTC")).date()
    found = []
    for offset in days:
        for hour, minute in ((9, 0), (10, 30), (14, 0), (17, 30)):
            zone = zones[(offset + hour) % len(zones)]
            day = today + timedelta(days=offset)
            found.append(datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone))
    return [moment.isoformat() for moment in found]


# Values near the edges of what the API and PostgreSQL hold, which random text rarely hits.
AMOUNTS = [
    "0", "0.00", "-0", "50.00", "50.5", "0.001", "-1", "1e-30", "1e30", "1E+11",
    "99999999999.99", "NaN", "Infinity", "\u0665", " 5",
]  # fmt: skip
TIMEZONES = [
    "Europe/Paris", "UTC", "Asia/Kathmandu", "Pacific/Kiritimati", "Etc/GMT-14",
    "Etc/GMT+12", "America/St_Johns", "Australia/Lord_Howe", "Mars/Olympus",
]  # fmt: skip
CURRENCIES = ["eur", "EUR", "jpy", "kwd", "bhd", "usd", "xau", "xts", "clf"]
EDGE_PROBABILITY = 0.4

# Any start of the first list is before any end of the second, less than 62 days before
# it (the longest availability range): a drawn pair is a valid range.
STARTS = range(1, 41, 3)
ENDS = range(41, 61, 3)


def _toml(value: object) -> str:
    # Strings and lists of strings: JSON's escapes are TOML's.
    return json.dumps(value)


def write_config(seed: Seed, path: Path) -> Path:
    dictionaries = {
        "artists": seed.artist_ids,
        "services": seed.service_ids,
        "clients": seed.client_ids,
        "bookings": seed.booking_ids,
        "leaves": seed.leave_ids,
        "feeds": seed.calendar_tokens,
        "starts": _instants(STARTS),
        "ends": _instants(ENDS),
        "amounts": AMOUNTS,
        "timezones": TIMEZONES,
        "currencies": CURRENCIES,
    }
    bindings = {
        "path.artist_id": ("artists", ID_PROBABILITY),
        "path.service_id": ("services", ID_PROBABILITY),
        "path.client_id": ("clients", ID_PROBABILITY),
        "path.booking_id": ("bookings", ID_PROBABILITY),
        "path.leave_id": ("leaves", ID_PROBABILITY),
        "path.token": ("feeds", ID_PROBABILITY),
        "body.artistId": ("artists", ID_PROBABILITY),
        "body.serviceId": ("services", ID_PROBABILITY),
        "body.clientId": ("clients", ID_PROBABILITY),
        "query.artistId": ("artists", ID_PROBABILITY),
        "query.clientId": ("clients", ID_PROBABILITY),
        "body.startTime": ("starts", TIME_PROBABILITY),
        "body.startDate": ("starts", TIME_PROBABILITY),
        "body.endTime": ("ends", TIME_PROBABILITY),
        "body.endDate": ("ends", TIME_PROBABILITY),
        "query.from": ("starts", TIME_PROBABILITY),
        "query.to": ("ends", TIME_PROBABILITY),
        "body.price": ("amounts", EDGE_PROBABILITY),
        "body.depositAmount": ("amounts", EDGE_PROBABILITY),
        "body.timezone": ("timezones", EDGE_PROBABILITY),
        "body.currency": ("currencies", EDGE_PROBABILITY),
    }
    lines = ["# Written by tests/fuzz for one run; see tests/fuzz/config.py.", ""]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {_toml(values)}", ""]
    lines.append("[parameters]")
    for key, (dictionary, chance) in bindings.items():
        binding = f"{{ dictionary = {_toml(dictionary)}, probability = {chance} }}"
        lines.append(f"{_toml(key)} = {binding}")
    lines += [
        "",
        "[checks]",
        "enabled = true  # every check: `--checks all`, which the operation below can refine",
        "",
        "[checks.positive_data_acceptance]",
        f"expected-statuses = {_toml(POSITIVE_STATUSES)}",
        "",
        # /api/bookings/create is also /api/bookings/{booking_id} with the id "create" (the
        # contract names both), so its Allow header rightly lists GET as well.
        "[[operations]]",
        'include-path = "/api/bookings/create"',
        "checks.allow_header_conformance.enabled = false",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
