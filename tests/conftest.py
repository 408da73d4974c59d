"""Shared fixtures. Service fixtures (redis, slapd, postgres, upstream IdP, celery) live in tests/support."""

from __future__ import annotations

import base64

import pytest
from flask_migrate import upgrade

from scitoken_issuer.app import create_app
from scitoken_issuer.extensions import db, runtime

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.slapd",
    "tests.support.postgres",
    "tests.support.upstream_idp",
    "tests.support.e2e",
    "tests.support.rp_issuer",
]

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef-0123456789abcdef"


def make_app(tmp_path, **overrides):
    """An app on its own SQLite file (or ``DATABASE_URL``), migrated to the current schema."""
    config = {"TESTING": True, "SECRET_KEY": TEST_SECRET, "INSTANCE_PATH": str(tmp_path / "instance"),
              "ADMIN_TOKEN": ADMIN_TOKEN, "ISSUER_ADDRESS": "http://issuer.test"}
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    return app


@pytest.fixture
def app_config():
    """Override in a test module to change settings for every app fixture there."""
    return {}


@pytest.fixture
def app(tmp_path, app_config):
    app = make_app(tmp_path, **app_config)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def basic_auth(client_id: str, secret: str) -> dict:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


@pytest.fixture
def make_client(app):
    """Factory: register a client directly (as an administrator) and return (client, secret)."""

    def factory(**params):
        params.setdefault("client_name", "test client")
        params.setdefault("grant_types", ["client_credentials"])
        params.setdefault("scope", "storage.read:/data storage.create:/data/out compute.read")
        admin = params.pop("admin", True)
        registration = runtime().clients.register(params, admin=admin, source="admin" if admin else "dynamic")
        db.session.commit()
        return registration.client, registration.client_secret

    return factory
