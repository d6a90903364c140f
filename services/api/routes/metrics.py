"""GET /metrics: Prometheus' text format, the sum over every gunicorn worker."""

from __future__ import annotations

from flask import Blueprint, Response

from services.api.openapi import PUBLIC, Reply, operation
from shared.adapters import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@operation(
    "metrics",
    "Prometheus metrics",
    tag="operations",
    security=PUBLIC,
    description=(
        "The Prometheus text exposition format: request latency per route and status, "
        "booking outcomes, webhook events received, Stripe call latency and errors, summed "
        "over every worker process of this server. No personal data; still, expose it to "
        "the monitoring network only (docs/observability.md)."
    ),
    responses={200: Reply("The metrics.", media_type="text/plain")},
    database=False,
)
def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
