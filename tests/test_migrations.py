"""The Alembic migrations build exactly the schema the models describe (SQLite and PostgreSQL),
from any earlier revision; the web refuses to serve on a schema behind its code."""

from __future__ import annotations

import logging

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scitoken_issuer.app import create_app
from scitoken_issuer.extensions import db

from .conftest import TEST_SECRET, make_app


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




def test_every_earlier_revision_upgrades_to_head_twice(tmp_path, pg_url):
    """docs/configuration.md, "Upgrades": ``db upgrade`` brings a database at any earlier revision
    to the head, and running it again changes nothing (PostgreSQL, the production database)."""
    from alembic.script import ScriptDirectory
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "INSTANCE_PATH": str(tmp_path / "i"),
                      "DATABASE_URL": pg_url})
    directory = app.extensions["migrate"].directory
    revisions = [r.revision for r in ScriptDirectory(directory).walk_revisions()][::-1]
    with app.app_context():
        for earlier in revisions[:-1]:
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            upgrade(directory=directory, revision=earlier)
            upgrade(directory=directory)
            upgrade(directory=directory)
            assert schema_drift(app) == []
        db.engine.dispose()


@pytest.fixture
def behind(tmp_path, pg_url):
    """An issuer whose PostgreSQL database is one migration behind its code (an upgrade whose
    release step has not run yet), with a client registered then."""
    from alembic.script import ScriptDirectory
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SECRET_KEY": TEST_SECRET, "INSTANCE_PATH": str(tmp_path / "i"),
                      "DATABASE_URL": pg_url, "ISSUER_ADDRESS": "http://issuer.test"})
    script = ScriptDirectory(app.extensions["migrate"].directory)
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory, revision=previous)
    yield app, previous, head
    with app.app_context():
        db.engine.dispose()


def test_schema_behind_the_code_is_refused_until_upgraded(behind, caplog):
    """docs/configuration.md, "Upgrades": on a schema behind its migrations the web answers 503
    (RFC 6749 §5.2 ``temporarily_unavailable`` with Retry-After), /readyz names the schema and
    the command, the log says it once; after ``db upgrade`` the same process serves."""
    from flask_migrate import upgrade

    app, previous, head = behind
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="scitoken_issuer"):
        ready = client.get("/readyz")
        answers = [client.post("/auth/token", data={"grant_type": "client_credentials"}) for _ in range(3)]
        page = client.get("/auth/device")
    assert ready.status_code == 503
    assert ready.json["checks"]["schema"] == (f"the database schema is at {previous}, behind this code's "
                                              f"{head}: run `scitoken-issuer db upgrade`")
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.json["error"] == "temporarily_unavailable"
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert client.get("/healthz").status_code == 200
    told = [r for r in caplog.records if "scitoken-issuer db upgrade" in r.getMessage()]
    assert len(told) == 1 and f"at {previous}" in told[0].getMessage()

    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    assert client.get("/readyz").json["checks"]["schema"] == "ok"
    assert client.post("/auth/token", data={"grant_type": "client_credentials"}).status_code == 401


def test_schema_newer_than_the_code_is_served(tmp_path):
    """docs/configuration.md, "Upgrades": a revision this code does not know is a newer release's
    (a rolling upgrade migrated first); migrations add, so this code keeps serving."""
    app = make_app(tmp_path)
    with app.app_context():
        with db.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        db.engine.dispose()
    client = app.test_client()
    assert client.get("/readyz").json["checks"]["schema"] == "ok"
    assert client.post("/auth/token", data={"grant_type": "client_credentials"}).status_code == 401
