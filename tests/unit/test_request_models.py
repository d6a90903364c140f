"""Every request model of every operation refuses what PostgreSQL or Python cannot hold,
so that a field added tomorrow gets it too: it derives from `RequestModel` (NUL refused
in any string) and each of its timestamps is a `Timestamp` (the supported range)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import AfterValidator, AwareDatetime, BaseModel, RootModel, ValidationError

from services.api import schemas
from services.api.openapi import document_app, request_models
from services.api.schemas import RequestModel, Timestamp
from shared.domain.timeutil import EARLIEST, LATEST

DATETIMES = (datetime, AwareDatetime)


def _is_range_check(meta: object) -> bool:
    return isinstance(meta, AfterValidator) and meta.func is schemas._supported


def _datetimes(annotation: Any, guarded: bool) -> Iterator[bool]:
    """For each datetime inside `annotation`: whether the supported range guards it."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        yield from _datetimes(base, guarded or any(_is_range_check(m) for m in meta))
    elif isinstance(annotation, type) and issubclass(annotation, DATETIMES):
        yield guarded
    else:
        for arg in get_args(annotation):
            yield from _datetimes(arg, guarded)


def _models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """`model` and the models its fields hold."""
    yield model
    for field in model.model_fields.values():
        for arg in (field.annotation, *get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _models(arg)


# The webhook's body is documented, never parsed by a model: the receiver reads the signed
# raw bytes itself (shared.domain.event_bodies holds it to what the inbox can store).
RAW_BODIES = {schemas.StripeEvent}
OPERATION_MODELS = [m for m in request_models(document_app()) if m not in RAW_BODIES]
ALL_MODELS = list(dict.fromkeys(m for top in OPERATION_MODELS for m in _models(top)))


def test_the_operations_have_request_models() -> None:
    names = {model.__name__ for model in ALL_MODELS}
    assert {"LeaveRequest", "BookingListQuery", "WorkingHoursItem"} <= names


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_request_model_refuses_nul(model: type[BaseModel]) -> None:
    if issubclass(model, RootModel):
        return  # a list of request models: its items are held to it below
    assert issubclass(model, RequestModel)


def test_a_bare_timestamp_would_be_found() -> None:
    class Bare(RequestModel):
        at: AwareDatetime
        maybe: list[AwareDatetime | None] = []

    for name in ("at", "maybe"):
        field = Bare.model_fields[name]
        assert not all(_datetimes(field.annotation, False)), name
    field = _Probe.model_fields["maybe"]
    assert all(_datetimes(field.annotation, False))


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_request_timestamp_is_limited_to_the_supported_range(
    model: type[BaseModel],
) -> None:
    for name, field in model.model_fields.items():
        guarded = any(_is_range_check(m) for m in field.metadata)
        assert all(_datetimes(field.annotation, guarded)), f"{model.__name__}.{name}"


class _Probe(RequestModel):
    at: Timestamp
    maybe: Timestamp | None = None
    text: str = ""
    many: list[str] = []


@pytest.mark.parametrize(
    ("moment", "valid"),
    [
        (EARLIEST, True),
        (LATEST, False),
        (datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), True),
        (datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), False),
        (datetime.fromisoformat("0001-01-01T00:00:00+14:00"), False),
        (datetime.fromisoformat("9999-12-31T23:59:59-14:00"), False),
    ],
)
def test_the_supported_range(moment: Any, valid: bool) -> None:
    for data in ({"at": moment}, {"at": EARLIEST, "maybe": moment}):
        if valid:
            _Probe.model_validate(data)
        else:
            with pytest.raises(ValidationError, match="at or after 2000-01-01T00:00:00Z"):
                _Probe.model_validate(data)


@pytest.mark.parametrize("data", [{"text": "a\x00"}, {"many": ["ok", "\x00"]}])
def test_nul_is_refused_in_any_string(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        _Probe.model_validate({"at": EARLIEST, **data})
