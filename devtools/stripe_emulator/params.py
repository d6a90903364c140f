"""Request parameters: allowed keys from the SDK's typed params, and value parsing.

Allowed parameters (nested ones too) come from the SDK's ``stripe.params.*Params``
TypedDicts, so the emulator accepts exactly what the SDK may send: anything else is a 400
``parameter_unknown`` as at Stripe. Values arrive as form strings; the parsers below turn
them into Python values with Stripe's error for a bad one.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

from devtools.stripe_emulator.errors import invalid

_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


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


def check_params(
    params: Mapping[str, Any], td: type, prefix: str = "", extra: frozenset[str] = frozenset()
) -> None:
    """Reject keys the SDK's TypedDict ``td`` does not define (recursively) or requires;
    names in ``extra`` (``payment_method_data[card]``) are allowed as they are."""
    fields = _fields(td)
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if name in extra:
            continue
        spec = fields.get(key)
        if spec is None:
            raise invalid(f"Received unknown parameter: {name}", name, "parameter_unknown")
        if spec.nested is not None and not spec.free_form:
            items = list(enumerate(value)) if isinstance(value, list) else [(-1, value)]
            for i, item in items:
                if isinstance(item, dict):
                    check_params(item, spec.nested, name if i < 0 else f"{name}[{i}]", extra)
    for key in sorted(td.__required_keys__ - _REQUEST_OPTION_KEYS):  # type: ignore[attr-defined]
        if key not in params:
            name = f"{prefix}[{key}]" if prefix else key
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing")


def refuse_unmodelled(params: Mapping[str, Any], modelled: Iterable[str]) -> None:
    """Refuse SDK-valid parameters this emulator does not model (``false``/``""`` are fine)."""
    for key in sorted(set(params) - {"expand", *modelled}):
        if params[key] not in ("false", ""):
            msg = f"The Stripe emulator does not model parameter: {key}"
            raise invalid(msg, key, "emulator_unsupported_parameter")


def parse_int(params: Mapping[str, Any], key: str, name: str = "", minimum: int = 0) -> int | None:
    raw, name = params.get(key), name or key
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise invalid(f"Invalid integer: {raw}", name, "parameter_invalid_integer")
    if int(raw) < minimum:
        msg = f"This value must be greater than or equal to {minimum}."
        raise invalid(msg, name, "parameter_invalid_integer")
    return int(raw)


def parse_bool(params: Mapping[str, Any], key: str, name: str = "") -> bool | None:
    raw = params.get(key)
    if raw is not None and raw not in ("true", "false"):
        raise invalid(f"Invalid boolean: {raw}", name or key, "parameter_invalid_boolean")
    return None if raw is None else raw == "true"


def parse_enum(params: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    raw = params.get(key)
    if raw is not None and raw not in allowed:
        raise invalid(f"Invalid {key}: must be one of {', '.join(allowed)}", key)
    return raw


def parse_metadata(raw: Any, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Stripe metadata semantics: ``""`` clears all, a key set to ``""`` is removed."""
    out = dict(base or {})
    if raw is None or raw == "":
        return out if raw is None else {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise invalid("Invalid hash", "metadata")
    for key, value in raw.items():
        if len(key) > 40 or len(value) > 500:
            raise invalid("Metadata keys may have 40 and values 500 characters.", "metadata")
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    if len(out) > 50:
        raise invalid("You can have at most 50 metadata keys.", "metadata")
    return out
