"""GET /openapi.json: the API's OpenAPI 3.1 document; GET /docs: the same, browsable
(Swagger UI, its assets served from the flask-swagger-ui package: no CDN). Both public."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from flask_swagger_ui import get_swaggerui_blueprint

from services.api.openapi import PUBLIC, Reply, openapi_json, operation, undocumented
from services.api.responses import JSON

bp = Blueprint("docs", __name__)

DOCS_URL = "/docs"
reference = undocumented(
    get_swaggerui_blueprint(
        DOCS_URL,
        "/openapi.json",
        config={"app_name": "inkflow API reference", "deepLinking": True},
        blueprint_name="api_reference",
    ),
    "the HTML page and assets that render this document",
)


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
