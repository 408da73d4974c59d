"""PKCE for every client (RFC 9700 §2.1.1; docs/tokens.md, "PKCE"): an authorization request
without ``code_challenge`` is refused for confidential clients too, unless an administrator
exempted the client — which the client itself can never do through registration."""

from __future__ import annotations

import json

import pytest

from scitoken_issuer.extensions import db
from scitoken_issuer.settings import ConfigError
from tests.conftest import ADMIN_TOKEN, basic_auth, make_app
from tests.support.user_flows import (REDIRECT_URI, approve_code, authorize_query, code_tokens, redirect_params,
                                      sign_in)

SCOPE = "openid"
STATIC_SECRET = "static-portal-secret-0123456789abcdef-0123456789"
STATIC = [{"client_id": "legacy-portal", "client_secret": STATIC_SECRET, "pkce_required": False,
           "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI]}]


@pytest.fixture
def app(tmp_path):
    """No app context held across requests (Flask-WTF caches the CSRF token on ``g``)."""
    app = make_app(tmp_path, STATIC_CLIENTS=json.dumps(STATIC))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def cli(app, *args: str) -> dict:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def add_confidential(app, *extra: str) -> dict:
    return cli(app, "client", "add", "--name", "portal", "--grant", "authorization_code",
               "--redirect-uri", REDIRECT_URI, "--scope", SCOPE, *extra)


def refused_without_challenge(client, client_id: str) -> dict:
    """The authorization request without PKCE, as the client sees the answer."""
    return redirect_params(client.get(authorize_query(client_id, SCOPE, challenge=None)))


def exchange_without_verifier(client, client_id: str, secret: str):
    params = approve_code(client, authorize_query(client_id, SCOPE, challenge=None))
    return client.post("/auth/token", headers=basic_auth(client_id, secret), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI})


def test_confidential_client_without_pkce_is_refused(app, client):
    """RFC 9700 §2.1.1 and RFC 6749 §4.1.2.1: a confidential client's request without
    ``code_challenge`` is an ``invalid_request`` error redirect with its ``state``; no code."""
    created = add_confidential(app)
    assert created["pkce_required"] is True
    params = refused_without_challenge(client, created["client_id"])
    assert params["error"] == "invalid_request" and params["state"] == "st-1"
    assert params["error_description"].startswith("code_challenge required")
    assert "code" not in params


def test_confidential_client_with_pkce_gets_tokens(app, client):
    """RFC 7636 §4: the same client with S256 PKCE completes the flow."""
    created = add_confidential(app)
    sign_in(client)
    body = code_tokens(client, created["client_id"], SCOPE,
                       auth=basic_auth(created["client_id"], created["client_secret"]))
    assert body["access_token"] and body["id_token"]


def test_administrator_exemption_through_the_cli(app, client):
    """docs/tokens.md "PKCE": ``client add --no-pkce-required`` exempts a confidential client
    (code flow without PKCE works); ``client update --pkce-required`` ends the exemption."""
    created = add_confidential(app, "--no-pkce-required")
    assert created["pkce_required"] is False
    sign_in(client)
    response = exchange_without_verifier(client, created["client_id"], created["client_secret"])
    assert response.status_code == 200, response.get_json()

    updated = cli(app, "client", "update", "--pkce-required", "--", created["client_id"])
    assert updated["pkce_required"] is True
    assert refused_without_challenge(client, created["client_id"])["error"] == "invalid_request"
    again = cli(app, "client", "update", "--no-pkce-required", "--", created["client_id"])
    assert again["pkce_required"] is False and cli(app, "client", "show", "--", created["client_id"])[
        "pkce_required"] is False


def test_static_client_exemption(client):
    """docs/tokens.md "PKCE": ``"pkce_required": false`` in ``STATIC_CLIENTS`` exempts that client."""
    sign_in(client)
    response = exchange_without_verifier(client, "legacy-portal", STATIC_SECRET)
    assert response.status_code == 200, response.get_json()


def test_public_clients_are_never_exempted(app, tmp_path):
    """RFC 9700 §2.1.1: PKCE is never optional for a public client — refused by the CLI and in
    ``STATIC_CLIENTS``."""
    result = app.test_cli_runner().invoke(args=[
        "client", "add", "--public", "--no-pkce-required", "--grant", "authorization_code",
        "--redirect-uri", REDIRECT_URI])
    assert result.exit_code != 0 and "public client cannot be exempted from PKCE" in result.output
    public = [{"client_id": "spa", "token_endpoint_auth_method": "none", "pkce_required": False,
               "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI]}]
    with pytest.raises(ConfigError, match="public client cannot be exempted from PKCE"):
        make_app(tmp_path / "other", STATIC_CLIENTS=json.dumps(public))


@pytest.mark.parametrize("admin", [False, True])
def test_registration_cannot_exempt_a_client(client, admin):
    """RFC 7591 §2 / RFC 7592 §2.2: ``pkce_required`` is not client metadata — a registration or
    an update that sends ``"pkce_required": false`` (even with the admin token) leaves PKCE
    required, and the answer does not claim otherwise."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if admin else {}
    metadata = {"client_name": "sneaky", "redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"],
                "scope": SCOPE, "pkce_required": False}
    registered = client.post("/auth/client/registration", json=metadata, headers=headers)
    assert registered.status_code == 201, registered.get_json()
    body = registered.get_json()
    assert "pkce_required" not in body
    assert refused_without_challenge(client, body["client_id"])["error"] == "invalid_request"

    uri = body["registration_client_uri"].removeprefix("http://issuer.test")
    updated = client.put(uri, headers={"Authorization": f"Bearer {body['registration_access_token']}"},
                         json={**metadata, "client_id": body["client_id"], "client_secret": body["client_secret"]})
    assert updated.status_code == 200, updated.get_json()
    assert "pkce_required" not in updated.get_json()
    assert refused_without_challenge(client, body["client_id"])["error"] == "invalid_request"
