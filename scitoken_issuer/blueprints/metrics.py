"""``GET /metrics`` (Prometheus text exposition) and the timing of every request (docs/metrics.md)."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request, request_finished, request_started

from .. import metrics
from ..extensions import runtime
from ..metrics_process import bearer_matches
from .errors import error_response

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    """Every process's metrics; with ``METRICS_TOKEN`` set, only for ``Authorization: Bearer <it>``
    (RFC 6750 §3.1 challenge otherwise)."""
    header = request.headers.get("Authorization")
    if not bearer_matches(header, runtime().settings.metrics_token):
        challenge = 'Bearer realm="metrics"' if not header else \
            'Bearer realm="metrics", error="invalid_token", error_description="the metrics token is not valid"'
        return error_response(401, "invalid_token", "send the metrics token as a Bearer token",
                              {"WWW-Authenticate": challenge})
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def _started(sender: Flask, **_extra) -> None:
    g.metrics_started = time.perf_counter()


def _finished(sender: Flask, response: Response, **_extra) -> None:
    started = g.get("metrics_started")
    if started is not None:
        rule = request.url_rule
        metrics.request_answered(rule.endpoint if rule is not None else None, response.status_code,
                                 time.perf_counter() - started)


def init_request_metrics(app: Flask) -> None:
    """Time every request of ``app``, from before its first ``before_request`` to its response."""
    request_started.connect(_started, app)
    request_finished.connect(_finished, app)
