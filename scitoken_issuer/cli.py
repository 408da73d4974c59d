"""The ``scitoken-issuer`` console script: Flask's CLI for this app, with one-line config errors."""

from __future__ import annotations

import sys

from flask.cli import FlaskGroup

from .settings import ConfigError


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
        sys.exit(2)


if __name__ == "__main__":
    main()
