"""The application factory: ``create_app(config=None) -> Flask``."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from .database import autocommit_twin, engine_options, init_engine
from .extensions import AUTOCOMMIT_ENGINE, csrf, db, migrate
from .runtime import Runtime
from .services.schema import MIGRATIONS
from .settings import Settings

logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the issuer. ``config`` overrides the environment (tests); nothing touches the
    database, Redis or LDAP here."""
    config = dict(config or {})
    instance_path = config.pop("INSTANCE_PATH", None) or os.environ.get("INSTANCE_PATH")
    app = Flask(__name__, instance_path=instance_path and os.path.abspath(instance_path),
                instance_relative_config=True)
    settings = Settings.load(config)
    init_config(app, settings, config)
    init_logging(app, settings)
    init_database(app)
    init_runtime(app, settings)
    init_oauth(app)
    init_celery(app)
    init_blueprints(app)
    init_metrics(app)
    init_sessions(app)
    init_rate_limits(app, settings)
    init_web_security(app, settings)
    init_cli(app)
    return app


def init_config(app: Flask, settings: Settings, overrides: Mapping[str, Any]) -> None:
    app.config.update(settings.as_flask_config())
    app.config["SECRET_KEY"] = settings.secret_key or _development_secret(app)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.database_url or \
        f"sqlite:///{os.path.join(app.instance_path, 'scitoken-issuer.db')}"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = settings.issuer_address.startswith("https://")
    app.config["WTF_CSRF_TIME_LIMIT"] = 3600
    app.config["TESTING"] = bool(overrides.get("TESTING", False))


def _development_secret(app: Flask) -> str:
    """In development, generate SECRET_KEY once and keep it in the instance folder (0600).
    Several processes may race here: O_EXCL makes exactly one of them write it."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process created it a moment ago and may still be writing
            value = Path(path).read_text().strip()
            if value:
                return value
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it to generate a new SECRET_KEY")
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def init_logging(app: Flask, settings: Settings) -> None:
    """The level of our loggers; every process entry (gunicorn, Celery) redacts secrets from its
    log handlers (:mod:`scitoken_issuer.log_redaction`)."""
    from .log_redaction import redact_celery_logs
    logging.getLogger("scitoken_issuer").setLevel(settings.log_level)
    redact_celery_logs()


def init_database(app: Flask) -> None:
    from . import models  # noqa: F401  (registers the tables on the metadata)
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    with app.app_context():
        init_engine(db.engine)
        if db.engine.dialect.name == "postgresql":
            app.extensions[AUTOCOMMIT_ENGINE] = autocommit_twin(db.engine)


def init_runtime(app: Flask, settings: Settings) -> None:
    from .blueprints.edge import refuse_behind_schema
    from .oauth2.protocol import GRANT_TYPES
    rt = app.extensions["scitoken_issuer"] = Runtime.build(settings, app.config["SECRET_KEY"], GRANT_TYPES)
    app.before_request(refuse_behind_schema)  # until the schema is seen current: one query per process
    app.before_request(rt.version.begin_request)  # unsubscribed: one GET of the state version per request
    app.teardown_request(rt.version.end_request)


def init_oauth(app: Flask) -> None:
    from .oauth2 import init_oauth as _init_oauth
    csrf.init_app(app)
    _init_oauth(app)


def init_celery(app: Flask) -> None:
    from .background import celery_init_app
    celery_init_app(app)


def init_rate_limits(app: Flask, settings: Settings) -> None:
    """Failures are counted, never work (docs/security-web.md): wrong user codes per address,
    failed client authentication per address and per client id.

    One counter store per app (Redis when configured, shared by every process; else in this
    process), so several apps in one process (tests) never share counters."""
    from .services.failure_limits import (CLIENT_AUTH_BY_ADDRESS, CLIENT_AUTH_BY_CLIENT, WRONG_USER_CODE,
                                          FailureLimits)
    app.extensions["failure_limits"] = FailureLimits(_limits_storage(settings.redis_url), {
        WRONG_USER_CODE: settings.failed_user_code_limit,
        CLIENT_AUTH_BY_ADDRESS: settings.failed_auth_limit_address,
        CLIENT_AUTH_BY_CLIENT: settings.failed_auth_limit_client,
    }, redis_client=app.extensions["scitoken_issuer"].redis)


def _limits_storage(redis_url: str | None) -> str:
    """The ``limits`` storage URI of REDIS_URL (it spells a Unix socket ``redis+unix://``)."""
    if not redis_url:
        return "memory://"
    return "redis+unix://" + redis_url[len("unix://"):] if redis_url.startswith("unix://") else redis_url


def init_web_security(app: Flask, settings: Settings) -> None:
    from .web_security import init_browser_security, init_proxies
    init_proxies(app, settings)
    init_browser_security(app, settings)


def init_cli(app: Flask) -> None:
    from .commands import init_cli as _init_cli
    _init_cli(app)


def init_metrics(app: Flask) -> None:
    """``GET /metrics`` and request timing (docs/metrics.md)."""
    from .blueprints.metrics import bp, init_request_metrics
    app.register_blueprint(bp)
    init_request_metrics(app)


def init_sessions(app: Flask) -> None:
    """After every blueprint: the browser session only on browser paths."""
    from .blueprints.sessions import init_sessions as _init_sessions
    _init_sessions(app)


def init_blueprints(app: Flask) -> None:
    from .blueprints import register_blueprints
    register_blueprints(app)
