"""The OpenAPI 3.1 document, served at GET /openapi.json: generated, never written by hand.

Schemas come from the pydantic models — requests in `schemas`, responses in `responses`,
error bodies in `errors` — through pydantic's `models_json_schema`. Each handler declares
the rest beside itself with `@operation(...)`: summary, request model, responses by
status, the error codes it can answer, headers, security. `build_openapi(app)` walks the
app's URL map, so paths and path parameters come from the Flask rules, and a route
without a declaration cannot be served undocumented (building the document raises).
Error responses are derived from the declared codes and `errors.HTTP_STATUS`; every
operation may also answer INTERNAL_ERROR, one with a body PAYLOAD_TOO_LARGE, one behind a
token UNAUTHORIZED, one that uses the database SERVICE_UNAVAILABLE.

Why not spectree or flask-openapi3: both want to own request parsing. flask-openapi3
replaces the Flask class and injects typed arguments into handlers; spectree wraps each
handler in a decorator that parses and validates the request again. Either means
rewriting every handler, a second validation pass on the booking, webhook (raw, signed
body) and availability hot paths, and their own error format for invalid input — when
all we need from them is the document. This registry costs nothing per request (the
decorator only records the declaration) and keeps one schema library, pydantic.

`docs/openapi.json` is the committed copy of the document (a test keeps it equal to the
generated one): `make openapi` rewrites it, and the diff shows any change of the wire
format in review.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from flask import Blueprint, Flask
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from services.api.errors import (
    ERROR_MODELS,
    HTTP_STATUS,
    OPTIONAL_STATUS_HEADERS,
    STATUS_HEADERS,
    WHEN,
    ErrorBody,
)
from services.api.schemas import STRICT_NOTE
from shared.domain.access import Access
from shared.domain.errors import ErrorCode
from shared.logging_setup import REQUEST_ID_HEADER, REQUEST_ID_MAX_LENGTH

Schema = dict[str, Any]
Security = list[dict[str, list[str]]]
View = TypeVar("View", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
REF = "#/components/schemas/{model}"
EXTENSION_KEY = "inkflow.openapi"
SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

# The rule each route declares with `@operation(..., security=...)`: who may call it
# (`shared/domain/access.py`). services/api/auth.py enforces it on every request, and the
# document shows it as the operation's security. A route in /api/admin that an artist
# may use for its own artist (the path's `artist_id`, or the booking's artist, checked
# with `auth.check`/`auth.guard_for`) declares ARTIST; one that only the operator may,
# OPERATOR.
PUBLIC = Access.PUBLIC  # anyone, no token read
CLIENT = Access.CLIENT  # the operator, or the resource's client (anyone while client JWTs are off)
ARTIST = Access.ARTIST  # the operator, or the resource's artist
OPERATOR = Access.OPERATOR  # the operator only

_SECURITY: dict[Access, Security] = {
    Access.PUBLIC: [],
    # With AUTH_JWT_SECRET unset the client endpoints are open: `{}` is "no auth".
    Access.CLIENT: [{"operatorToken": []}, {"clientJwt": []}, {}],
    Access.ARTIST: [{"operatorToken": []}, {"artistJwt": []}],
    Access.OPERATOR: [{"operatorToken": []}],
}

_FLASK_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    description: str
    required: bool = False
    schema: Schema = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True)
class Reply:
    """A non-error response: its description and body model (None: any JSON object);
    `has_body=False` for one without a body (204, 304). `media_type`: a body that is not
    JSON is described as a string of that type. `headers`: the ones it always carries."""

    description: str
    model: type[BaseModel] | None = None
    has_body: bool = True
    media_type: str = JSON
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    security: Access
    responses: Mapping[int, Reply]
    errors: tuple[ErrorCode, ...] = ()
    description: str | None = None
    body: type[BaseModel] | None = None
    body_description: str | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    headers: tuple[Header, ...] = ()
    database: bool = True
    # Path parameters that are not row ids, described (the others say "a UUID").
    path_descriptions: Mapping[str, str] = field(default_factory=dict)

    def error_codes(self) -> list[ErrorCode]:
        """The declared codes, plus those any operation of its kind may answer."""
        codes = list(self.errors)
        if self.security is not Access.PUBLIC:
            codes += [ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN]
        if self.body is not None:
            codes.append(ErrorCode.PAYLOAD_TOO_LARGE)
        if self.database:
            codes.append(ErrorCode.SERVICE_UNAVAILABLE)
        codes.append(ErrorCode.INTERNAL_ERROR)
        return list(dict.fromkeys(codes))

    def models(self) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
        found: list[tuple[type[BaseModel], JsonSchemaMode]] = []
        if self.body is not None:
            found.append((self.body, "validation"))
        found += [(r.model, "serialization") for r in self.responses.values() if r.model]
        return found


_DECLARED: dict[Callable[..., Any], Operation] = {}
# Blueprints deliberately left out of the document, by name: (URL prefix, why).
_UNDOCUMENTED: dict[str, tuple[tuple[str, ...], str]] = {}


def undocumented(
    blueprint: Blueprint, reason: str, *, prefixes: Sequence[str] | None = None
) -> Blueprint:
    """Leave a blueprint's routes out of the document on purpose (the HTML reference
    that renders it, the web pages); any other route without a declaration still fails
    the build. `prefixes`: the URL prefixes its routes live under (default: its
    `url_prefix`); a route of it outside them fails the build too. No token is read on
    its routes (PUBLIC): a page that is not for everyone checks its own session."""
    chosen = (
        tuple(prefixes) if prefixes else (blueprint.url_prefix,) if blueprint.url_prefix else ()
    )
    if not chosen:
        raise ValueError(f"{blueprint.name}: an undocumented blueprint needs a URL prefix")
    _UNDOCUMENTED[blueprint.name] = (chosen, reason)
    return blueprint


def undocumented_prefixes() -> tuple[str, ...]:
    """URL prefixes whose routes are not in the document (the contract checks skip them)."""
    return tuple(prefix for prefixes, _ in _UNDOCUMENTED.values() for prefix in prefixes)


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    security: Access,
    responses: Mapping[int, Reply],
    errors: Sequence[ErrorCode] = (),
    description: str | None = None,
    body: type[BaseModel] | None = None,
    body_description: str | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    headers: Sequence[Header] = (),
    database: bool = True,
    path_descriptions: Mapping[str, str] | None = None,
) -> Callable[[View], View]:
    """Declare how a handler appears in the document, and who may call it (`security`,
    enforced by services/api/auth.py). Records it; changes nothing else.
    `body_required=False`: a body whose fields all have defaults may be left out.
    `database`: the handler uses the database, so a momentary failure of it (a lock or
    statement timeout, no connection free) answers 503 SERVICE_UNAVAILABLE."""
    declared = Operation(
        operation_id=operation_id,
        summary=summary,
        tag=tag,
        security=security,
        responses=responses,
        errors=tuple(errors),
        description=description,
        body=body,
        body_description=body_description,
        body_required=body_required,
        query=query,
        headers=tuple(headers),
        database=database,
        path_descriptions=dict(path_descriptions or {}),
    )

    def record(view: View) -> View:
        _DECLARED[view] = declared
        return view

    return record


# --------------------------------------------------------------------------- schemas


class _Names(GenerateJsonSchema):
    """Components named after the models (`Items[Booking]` as `BookingList`), without
    pydantic's per-property titles."""

    _GENERIC_ITEMS = re.compile(r"Items\[(\w+)\]")

    def normalize_name(self, name: str) -> str:
        items = self._GENERIC_ITEMS.fullmatch(name)
        return super().normalize_name(f"{items[1]}List" if items else name)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _ref(model: type[BaseModel]) -> Schema:
    return {"$ref": REF.format(model=model.__name__)}


@cache
def _components(models: tuple[tuple[type[BaseModel], JsonSchemaMode], ...]) -> Schema:
    keys, top = models_json_schema(models, ref_template=REF, schema_generator=_Names)
    schemas: Schema = top.get("$defs", {})
    for model, mode in models:
        expected = _ref(model)
        if keys[(model, mode)] != expected:
            # A model whose input and output schemas differ gets "-Input"/"-Output" names.
            raise RuntimeError(f"{model.__name__}: ambiguous schema {keys[(model, mode)]}")
    return dict(sorted(schemas.items()))


# --------------------------------------------------------------------------- operations


def _path_parameter(name: str, description: str | None = None) -> Schema:
    kind = name.removesuffix("_id").replace("_", " ")
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description
        or (
            f"The {kind} id (a UUID). An id that is not a UUID cannot name a row and answers "
            "NOT_FOUND, like an unknown one."
        ),
        "schema": {"type": "string"},
    }


def _inline(schema: Any, definitions: Schema) -> Any:
    """`schema` with its local `$ref`s replaced by their definitions: a parameter's schema
    stands alone in the document (an enum of a query parameter, for one)."""
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found = definitions[ref.removeprefix("#/$defs/")]
        merged = {**found, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _inline(merged, definitions)
    return {key: _inline(value, definitions) for key, value in schema.items()}


def _query_parameters(model: type[BaseModel]) -> list[Schema]:
    generated = model.model_json_schema(by_alias=True, schema_generator=_Names)
    definitions = generated.get("$defs", {})
    required = set(generated.get("required", []))
    params = []
    for name, prop in generated["properties"].items():
        prop = dict(_inline(prop, definitions))
        description = prop.pop("description", None)
        prop.pop("default", None)
        # An absent parameter is how a query says null.
        variants = [v for v in prop.pop("anyOf", []) if v != {"type": "null"}]
        schema = variants[0] if len(variants) == 1 else prop
        param: Schema = {"name": name, "in": "query", "required": name in required}
        if description:
            param["description"] = description
        param["schema"] = schema
        params.append(param)
    return params


def _header_parameter(header: Header) -> Schema:
    return {
        "name": header.name,
        "in": "header",
        "required": header.required,
        "description": header.description,
        "schema": header.schema,
    }


def _error_responses(codes: Iterable[ErrorCode]) -> dict[int, Schema]:
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    out: dict[int, Schema] = {}
    for status, group in by_status.items():
        variants = [_ref(ERROR_MODELS[code]) for code in group]
        response: Schema = {
            "description": " ".join(f"{code.value}: {WHEN[code]}" for code in group),
            "content": {JSON: {"schema": variants[0] if len(group) == 1 else {"oneOf": variants}}},
        }
        headers = {
            name: {"description": text, "required": required, "schema": {"type": "string"}}
            for table, required in ((STATUS_HEADERS, True), (OPTIONAL_STATUS_HEADERS, False))
            for name, text in table.get(status, {}).items()
        }
        if headers:
            response["headers"] = headers
        out[status] = response
    return out


def _body_schema(reply: Reply) -> Schema:
    if reply.media_type != JSON:
        return {"type": "string"}
    return _ref(reply.model) if reply.model is not None else {"type": "object"}


# Every answer carries it (services/api/telemetry.py).
_REQUEST_ID_RESPONSE_HEADER: Schema = {
    "description": (
        "The request's id: the caller's X-Request-ID when it is 1 to "
        f"{REQUEST_ID_MAX_LENGTH} characters of letters, digits and `._:@+=/-` (starting "
        "with a letter or digit), else one made by the server. It is in every log line of "
        "the request and of the background tasks it caused."
    ),
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": REQUEST_ID_MAX_LENGTH},
}


def _operation_object(op: Operation, path_params: list[str]) -> Schema:
    out: Schema = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    out["security"] = _SECURITY[op.security]
    params = [_path_parameter(name, op.path_descriptions.get(name)) for name in path_params]
    params += _query_parameters(op.query) if op.query is not None else []
    params += [_header_parameter(h) for h in op.headers]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "description": op.body_description or STRICT_NOTE,
            "content": {JSON: {"schema": _ref(op.body)}},
        }
    responses: dict[int, Schema] = {}
    for status, reply in op.responses.items():
        responses[status] = {"description": reply.description}
        if reply.has_body:
            responses[status]["content"] = {reply.media_type: {"schema": _body_schema(reply)}}
        if reply.headers:
            responses[status]["headers"] = {
                h.name: {"description": h.description, "required": h.required, "schema": h.schema}
                for h in reply.headers
            }
    for status, response in _error_responses(op.error_codes()).items():
        if status in responses:
            raise RuntimeError(f"{op.operation_id}: status {status} declared twice")
        responses[status] = response
    for response in responses.values():
        response.setdefault("headers", {})[REQUEST_ID_HEADER] = {
            "$ref": "#/components/headers/RequestId"
        }
    out["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return out


def _declaration(app: Flask, endpoint: str) -> Operation | None:
    # unwrap: a view wrapped after registration (a rate limit) keeps its declaration.
    return _DECLARED.get(inspect.unwrap(app.view_functions[endpoint]))


def _declared(app: Flask, rule: Rule) -> Operation:
    declared = _declaration(app, rule.endpoint)
    if declared is None:
        raise RuntimeError(f"{rule.rule} ({rule.endpoint}) has no @operation declaration")
    return declared


def _undocumented(rule: Rule) -> bool:
    found = _UNDOCUMENTED.get(rule.endpoint.split(".")[0])
    if found is None:
        return False
    if not rule.rule.startswith(found[0]):
        raise RuntimeError(f"{rule.rule} ({rule.endpoint}) is outside its prefixes {found[0]}")
    return True


def access_rules(app: Flask) -> dict[str, Access]:
    """Each endpoint's rule: its declaration's `security`; PUBLIC for an undocumented
    blueprint's. A route with neither raises: it could not be served safely."""
    return {
        rule.endpoint: Access.PUBLIC if _undocumented(rule) else _declared(app, rule).security
        for rule in app.url_map.iter_rules()
    }


def _operations(app: Flask) -> Iterable[tuple[str, str, Operation, list[str]]]:
    for rule in app.url_map.iter_rules():
        if _undocumented(rule):
            continue
        declared = _declared(app, rule)
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            path = _FLASK_VARIABLE.sub(r"{\1}", rule.rule)
            yield path, method.lower(), declared, _FLASK_VARIABLE.findall(rule.rule)


def request_models(app: Flask) -> list[type[BaseModel]]:
    """The body and query models of every documented operation of `app`."""
    found = [
        model
        for _, _, op, _ in _operations(app)
        for model in (op.body, op.query)
        if model is not None
    ]
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- document

_DESCRIPTION = """\
Booking backend for tattoo artists: clients ask for free slots, hold one and pay the \
deposit with Stripe.js; Stripe webhooks confirm bookings in the background; operators \
manage the catalogue under `/api/admin`.

Conventions:
- JSON field names are camelCase. Responses carry UTC timestamps with milliseconds and \
`Z`; requests accept any ISO 8601 timestamp with an offset (without one: VALIDATION_ERROR).
- Money: decimal strings in major units (`"50.00"`); Stripe amounts are integers in the \
currency's minor unit. Never a float.
- Ids are UUIDs. An id that is not a UUID answers NOT_FOUND (it cannot name a row); a \
wrong JSON type is a VALIDATION_ERROR.
- Requests are strict (`"60"` is not an integer); unknown fields are ignored. Responses \
list every key (null when it has no value) and no other.
- Collections answer `{"items": [...]}`.
- Every answer carries `X-Request-ID`: the caller's own when it sent a sane one (up to \
128 letters, digits and `._:@+=/-`), else a new one. Quote it when reporting a problem: \
the server's log lines, and those of the background work the request caused, carry it.
- Every error is `{"error": CODE, "message": "…", "details": {…}}` (details optional). \
A method the route does not serve answers 405 VALIDATION_ERROR, an unknown route 404 \
NOT_FOUND, a body over 1 MiB 413 PAYLOAD_TOO_LARGE.
- Roles. Each operation's `security` says who may call it. The operator \
(`operatorToken`, ADMIN_API_TOKEN) may call everything. With AUTH_JWT_SECRET set, artists \
and clients carry HS256 JWTs signed with it (`exp` required; `role` "client", the \
default, or "artist"; `sub` the client's or artist's id): a client (`clientJwt`) uses the \
client endpoints for itself only; an artist (`artistJwt`) uses the management endpoints \
for its own artist only — its profile and policy (not its Stripe account), services, \
working hours, leaves, bookings and their actions. Everything else is FORBIDDEN to them. \
No token, or one that is not valid (bad signature, expired, unknown role, `sub` not an \
id): UNAUTHORIZED. Without AUTH_JWT_SECRET the client endpoints need no token (cancel and \
reschedule act for the `clientId` of their body, which must be the booking's) and the \
management endpoints need the operator's.
"""

_TAGS = [
    {"name": "client", "description": "What the frontend calls."},
    {"name": "webhooks", "description": "What Stripe calls."},
    {
        "name": "admin",
        "description": "The management API: the operator's, and an artist's for its own artist.",
    },
    {"name": "calendar", "description": "What calendar apps call (the artists' feeds)."},
    {"name": "operations", "description": "Probes and this document."},
]

_JWT_ERRORS = (
    "Missing, badly signed, expired, without `exp` or `sub`, with a `sub` that is not a "
    "UUID or an unknown `role`: UNAUTHORIZED."
)
_SECURITY_SCHEMES = {
    "operatorToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <ADMIN_API_TOKEN>`: the operator, who may call "
        "every operation.",
    },
    "clientJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "Applies only when the server sets AUTH_JWT_SECRET: an HS256 JWT signed with it, "
            'with `role` "client" (or no `role`), `sub` the clientId and an `exp`. '
            f"{_JWT_ERRORS} Valid, but for another client or a management endpoint: FORBIDDEN."
        ),
    },
    "artistJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "Applies only when the server sets AUTH_JWT_SECRET: an HS256 JWT signed with it, "
            'with `role` "artist", `sub` the artistId and an `exp`. It may use the management '
            "endpoints for that artist only (the path's artist, the booking's artist; "
            "`GET /api/admin/bookings` lists its own bookings). "
            f"{_JWT_ERRORS} Valid, but for another artist, a client endpoint or an "
            "operator-only endpoint: FORBIDDEN."
        ),
    },
}


def build_openapi(app: Flask) -> dict[str, Any]:
    """The document of the routes `app` serves."""
    paths: dict[str, dict[str, Schema]] = {}
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    models += [(model, "serialization") for model in ERROR_MODELS.values()]
    for path, method, op, path_params in sorted(_operations(app), key=lambda o: o[:2]):
        paths.setdefault(path, {})[method] = _operation_object(op, path_params)
        models += op.models()
    unique = tuple(dict.fromkeys(models))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "inkflow API", "version": "0.1.0", "description": _DESCRIPTION},
        "tags": _TAGS,
        "paths": paths,
        "components": {
            "schemas": _components(unique),
            "headers": {"RequestId": _REQUEST_ID_RESPONSE_HEADER},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


_RENDERED: dict[tuple[Any, ...], bytes] = {}


def openapi_json(app: Flask) -> bytes:
    """The document serialised once per app, for GET /openapi.json (and once per set of
    routes: the tests make hundreds of apps with the same routes)."""
    cached: bytes | None = app.extensions.get(EXTENSION_KEY)
    if cached is None:
        routes = tuple(
            (
                rule.rule,
                tuple(sorted(rule.methods or ())),
                id(_declaration(app, rule.endpoint)),
            )
            for rule in app.url_map.iter_rules()
        )
        cached = _RENDERED.get(routes)
        if cached is None:
            cached = _RENDERED[routes] = render(build_openapi(app))
        app.extensions[EXTENSION_KEY] = cached
    return cached


def render(document: Mapping[str, Any]) -> bytes:
    """Stable text: the committed snapshot diffs cleanly."""
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def document_app() -> Flask:
    """The routes alone (no settings, no connections): what the snapshot is built from.
    The web pages' routes too: they are served, though left out of the document."""
    from services.api.pages import PAGE_BLUEPRINTS
    from services.api.routes import BLUEPRINTS

    app = Flask("inkflow-openapi", static_folder=None)
    for blueprint in (*BLUEPRINTS, *PAGE_BLUEPRINTS):
        app.register_blueprint(blueprint)
    return app


def main(argv: Sequence[str] = sys.argv[1:]) -> Literal[0]:
    target = Path(argv[0]) if argv else SNAPSHOT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render(build_openapi(document_app())))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    # As a script this file is `__main__`, while the routes declare into the imported
    # `services.api.openapi`: run that one.
    from services.api import openapi

    sys.exit(openapi.main())
