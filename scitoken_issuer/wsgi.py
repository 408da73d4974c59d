"""WSGI entry for gunicorn: ``gunicorn scitoken_issuer.wsgi:app``; a bad setting is one line."""

from __future__ import annotations

import sys

from .settings import ConfigError

try:
    from .app import create_app
    app = create_app()
    app.extensions["scitoken_issuer"].settings.check_storage_root()
except ConfigError as exc:
    print(f"scitoken-issuer: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)  # gunicorn: "App failed to load", the arbiter stops instead of respawning
