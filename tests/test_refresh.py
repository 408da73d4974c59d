"""Refresh-token rotation (RFC 6749 §6, RFC 9700 §4.14.2; docs/tokens.md, "Refresh families"):
a retry within the grace window gets the same successor (idempotent), never a second branch;
reuse after the window revokes the family. Concurrent refreshes through real gunicorn processes
are in ``tests/test_refresh_storm.py``."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import RefreshToken
from tests.conftest import make_app
from tests.support.user_flows import DEVICE_GRANT, REDIRECT_URI, code_tokens, refresh, sign_in

SCOPE = "openid offline_access"


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def client_id(app) -> str:
    with app.app_context():
        registration = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": SCOPE, "redirect_uris": [REDIRECT_URI],
             "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT]}, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id


def age_rotations(app, seconds: int) -> None:
    """Move every rotation ``seconds`` into the past: the grace window has passed for them."""
    with app.app_context():
        db.session.execute(update(RefreshToken).where(RefreshToken.rotated_at.is_not(None))
                           .values(rotated_at=RefreshToken.rotated_at - seconds))
        db.session.commit()


def error_of(response) -> str:
    assert response.status_code == 400, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()["error"]


def test_retry_within_grace_gets_the_same_successor(app, client, client_id):
    """docs/tokens.md "Refresh families": a client that lost the answer and retries within the
    grace window gets the same refresh token again (a fresh access token), so the family keeps
    one branch; that successor refreshes normally."""
    sign_in(client)
    first = code_tokens(client, client_id, SCOPE)
    one = refresh(client, client_id, first["refresh_token"])
    two = refresh(client, client_id, first["refresh_token"])
    assert one.status_code == two.status_code == 200, (one.get_json(), two.get_json())
    assert one.get_json()["refresh_token"] == two.get_json()["refresh_token"] != first["refresh_token"]
    assert one.get_json()["access_token"] != two.get_json()["access_token"]
    assert refresh(client, client_id, one.get_json()["refresh_token"]).status_code == 200


def test_retry_after_the_successor_was_used_is_refused(app, client, client_id):
    """docs/tokens.md "Refresh families": once the successor has been used, the old token gets no
    answer even within the grace window (``invalid_grant``) — and the family lives on."""
    sign_in(client)
    first = code_tokens(client, client_id, SCOPE)
    second = refresh(client, client_id, first["refresh_token"]).get_json()
    third = refresh(client, client_id, second["refresh_token"]).get_json()
    assert error_of(refresh(client, client_id, first["refresh_token"])) == "invalid_grant"
    assert refresh(client, client_id, third["refresh_token"]).status_code == 200


def test_reuse_after_grace_revokes_the_family(app, client, client_id):
    """RFC 9700 §4.14.2: a rotated token presented after the grace window is a replay: the whole
    family (the live successor and its access tokens) is revoked."""
    sign_in(client)
    first = code_tokens(client, client_id, SCOPE)
    second = refresh(client, client_id, first["refresh_token"]).get_json()
    age_rotations(app, runtime_grace(app) + 1)
    replay = refresh(client, client_id, first["refresh_token"])
    assert error_of(replay) == "invalid_grant" and "reuse" in replay.get_json()["error_description"]
    assert error_of(refresh(client, client_id, second["refresh_token"])) == "invalid_grant"
    with app.app_context():  # its access tokens are revoked too (what introspection reports)
        rt = runtime()
        assert rt.revocations.is_revoked(rt.tokens.verify(second["access_token"]))


def runtime_grace(app) -> int:
    with app.app_context():
        return runtime().settings.refresh_reuse_grace


def test_successor_is_bound_to_this_issuer_key(tmp_path, app, client, client_id):
    """docs/tokens.md "Refresh families": the successor is derived with the issuer's key — another
    issuer (another ``SECRET_KEY``) derives a different one, so it cannot be guessed from the token."""
    other = make_app(tmp_path / "other", SECRET_KEY="another-secret-key-0123456789abcdef-0123456789")
    with app.app_context():
        ours = runtime().refresh.successor("some-refresh-token")
    with other.app_context():
        theirs = runtime().refresh.successor("some-refresh-token")
        db.engine.dispose()
    assert ours != theirs and len(ours) >= 43 and ours != "some-refresh-token"
