"""``python -m scitoken_issuer``: the embedded all-in-one issuer.

Applies the database migrations for the embedded SQLite default, makes sure a signing key
exists, prints what it is using, then serves with gunicorn on HOST:PORT. Ctrl-C stops it.
"""

from __future__ import annotations

import sys

from gunicorn.app.base import BaseApplication

from sqlalchemy.exc import DBAPIError

from .settings import ConfigError


class EmbeddedServer(BaseApplication):
    """gunicorn with the already-built app: one worker process, a few threads."""

    def __init__(self, app, bind: str, threads: int = 8):
        self.application = app
        from . import gunicorn_conf  # the access log and the app's log lines with secrets masked
        self.options = {"bind": bind, "workers": 1, "threads": threads, "worker_class": "gthread",
                        "accesslog": "-", "graceful_timeout": 5,
                        "limit_request_line": gunicorn_conf.limit_request_line, "timeout": 60,
                        "logger_class": gunicorn_conf.RedactingLogger,
                        "secure_scheme_headers": gunicorn_conf.secure_scheme_headers,
                        "forwarded_allow_ips": gunicorn_conf.forwarded_allow_ips}
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 27: one per user, not needed here
            self.cfg.set("control_socket_disable", True)

    def load(self):
        return self.application


def prepare(app) -> list[str]:
    """Bring the database to the current schema (SQLite) and the key set up; describe the setup."""
    from flask_migrate import upgrade

    from .extensions import db, runtime
    from .services.directory import group_source_summary
    with app.app_context():
        rt = runtime()
        settings = rt.settings
        settings.check_storage_root()
        uri = app.config["SQLALCHEMY_DATABASE_URI"]
        if uri.startswith("sqlite"):
            upgrade(directory=app.extensions["migrate"].directory)
        key = rt.keys.signing_key()
        id_key = rt.keys.id_token_key()
        db.session.commit()
        lines = [
            f"issuer        {settings.issuer_address}",
            f"database      {db.engine.url.render_as_string(hide_password=True)}",
            f"tasks         {'Celery over ' + settings.redis_url if settings.redis_url else 'in process (no REDIS_URL)'}",
            f"login         {'upstream IdP ' + settings.idp_address if settings.idp_address else 'DEVELOPMENT LOGIN (no IDP_ADDRESS): not for production'}",
            f"signing key   {key.alg} kid={key.kid}" + ("" if id_key.kid == key.kid else f"; ID tokens RS256 kid={id_key.kid}"),
            f"token profile {settings.token_profile}, audience {settings.audience or 'per profile (any)'}",
            f"storage root  {settings.posix_path or '(POSIX_PATH unset: storage scopes are refused)'}",
            f"groups        {group_source_summary(settings)}",
            f"instance      {app.instance_path}",
        ]
    return lines


def main() -> int:
    try:
        from .app import create_app
        app = create_app()
        lines = prepare(app)
    except ConfigError as exc:
        print(f"scitoken-issuer: configuration error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # the database refused or is down: its own first line, no traceback
        from .database import unavailable_reason
        print(f"scitoken-issuer: database unavailable: {unavailable_reason(exc)}", file=sys.stderr)
        return 1
    settings = app.extensions["scitoken_issuer"].settings
    print("scitoken-issuer (embedded)")
    for line in lines:
        print("  " + line)
    print(f"  serving on    http://{settings.host}:{settings.port}  (Ctrl-C stops)", flush=True)
    EmbeddedServer(app, f"{settings.host}:{settings.port}").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
