"""GET /openapi.json: the API's OpenAPI 3.1 document (public)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from services.api.openapi import PUBLIC, Reply, openapi_json, operation
from services.api.responses import JSON

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
@operation(
    "openapi",
    "This document",
    tag="operations",
    security=PUBLIC,
    responses={200: Reply("The OpenAPI 3.1 document.")},
    database=False,
)
def openapi_document() -> Response:
    return Response(openapi_json(current_app), mimetype=JSON)
