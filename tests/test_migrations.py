"""The Alembic migrations build exactly the schema the models describe (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scitoken_issuer.extensions import db

from .conftest import make_app


def schema_drift(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_sqlite_schema_matches_models(tmp_path):
    assert schema_drift(make_app(tmp_path)) == []


def test_postgres_schema_matches_models(tmp_path, postgres_url):
    import uuid

    import psycopg
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        app = make_app(tmp_path, DATABASE_URL=postgres_url.rsplit("/", 1)[0] + f"/{name}")
        assert schema_drift(app) == []
        with app.app_context():
            db.engine.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


