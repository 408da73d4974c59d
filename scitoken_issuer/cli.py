"""The ``scitoken-issuer`` console script: Flask's CLI for this app, with one-line errors for a bad
setting (exit 2) and for a database or Redis that is down (exit 3), never a traceback."""

from __future__ import annotations

import sys

from flask.cli import FlaskGroup
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

from .database import unavailable_reason
from .settings import ConfigError

EXIT_CONFIG, EXIT_UNAVAILABLE = 2, 3


def _create_app():
    from .app import create_app
    return create_app()


def main() -> None:
    cli = FlaskGroup(name="scitoken-issuer", create_app=_create_app, add_version_option=False,
                     help="Operate a scitoken-issuer: clients, keys, database, scopes and caches.")
    try:
        cli.main(prog_name="scitoken-issuer", standalone_mode=True)
    except ConfigError as exc:
        print(f"scitoken-issuer: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except (OperationalError, InterfaceError) as exc:  # refused, unreachable, dropped: the driver's line
        print(f"scitoken-issuer: database unavailable: {unavailable_reason(exc)}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)
    except RedisError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"scitoken-issuer: Redis unavailable: {reason}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)


if __name__ == "__main__":
    main()
