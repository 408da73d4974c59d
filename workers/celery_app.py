"""The worker and beat entry: ``celery -A workers.celery_app worker`` / ``... beat``."""

from __future__ import annotations

import sys

from scitoken_issuer.settings import ConfigError

try:
    from scitoken_issuer.app import create_app
    flask_app = create_app()
except ConfigError as exc:
    print(f"scitoken-issuer: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

app = celery = flask_app.extensions["celery"]
