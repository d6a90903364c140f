"""GET /openapi.json: the API's OpenAPI 3.1 document (public)."""

from __future__ import annotations

from flask import Blueprint, Response

from services.api.openapi import openapi_json

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return Response(openapi_json(), mimetype="application/json")
