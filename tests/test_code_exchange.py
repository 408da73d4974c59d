"""The token request of the authorization code grant (RFC 6749 §4.1.3) and a code used twice
(RFC 6749 §4.1.2, §10.5). See docs/conformance.md, "Token requests"."""

from __future__ import annotations

import jwt as pyjwt
import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import Revocation

from .conftest import make_app
from .support.dev_login import approve, authorize_url, pkce, redirect_params, sign_in

REDIRECT = "https://app.example.org/cb"


@pytest.fixture
def issuer(tmp_path):
    """The issuer with the development login and a public client with one redirect URI."""
    app = make_app(tmp_path)
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "portal", "grant_types": ["authorization_code", "refresh_token"],
             "scope": "openid offline_access storage.read:/", "redirect_uris": [REDIRECT],
             "token_endpoint_auth_method": "none"}, admin=True, source="admin")
        db.session.commit()
        app.config["test_client_id"] = registration.client.client_id
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(issuer):
    return issuer.test_client()


@pytest.fixture
def client_id(issuer):
    return issuer.config["test_client_id"]


def approved_code(client, client_id: str, scope: str = "openid", **extra) -> tuple[str, str]:
    """Sign in, ask for a code (``redirect_uri=None`` leaves it out), approve: (code, verifier)."""
    sign_in(client)
    verifier, challenge = pkce()
    params = {"client_id": client_id, "redirect_uri": REDIRECT, "scope": scope, "state": "st-1",
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    params = {k: v for k, v in params.items() if v is not None}
    return redirect_params(approve(client, authorize_url(**params)), REDIRECT)["code"], verifier


def exchange(client, client_id: str, code: str, verifier: str, **extra):
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id, "code_verifier": verifier,
            **extra}
    return client.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def test_token_request_names_the_redirect_uri_only_if_the_request_did(client, client_id):
    """RFC 6749 §4.1.3: ``redirect_uri`` is REQUIRED at the token endpoint only "if the
    redirect_uri parameter was included in the authorization request", and then identical."""
    code, verifier = approved_code(client, client_id, redirect_uri=None)
    response = exchange(client, client_id, code, verifier)
    assert response.status_code == 200, response.get_json()

    code, verifier = approved_code(client, client_id)
    for wrong in (None, REDIRECT + "/other"):
        response = exchange(client, client_id, code, verifier, redirect_uri=wrong)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant", wrong
    assert exchange(client, client_id, code, verifier, redirect_uri=REDIRECT).status_code == 200


def accepted(client, token: str) -> bool:
    """Is the access token accepted as a bearer token (userinfo, RFC 6750)?"""
    response = client.get("/auth/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), response.get_json()
    return response.status_code == 200


def test_code_used_twice_revokes_what_it_gave(issuer, client, client_id):
    """RFC 6749 §4.1.2: a code used more than once is refused, and the tokens its first exchange
    gave are revoked — the access token and the whole refresh family — when the second request
    holds the PKCE verifier (RFC 7636): a used code alone, found in a log or a history, revokes
    nothing."""
    code, verifier = approved_code(client, client_id, scope="openid offline_access")
    first = exchange(client, client_id, code, verifier, redirect_uri=REDIRECT).get_json()
    assert "refresh_token" in first, first
    without_verifier = exchange(client, client_id, code, "w" * 43, redirect_uri=REDIRECT)
    assert without_verifier.get_json()["error"] == "invalid_grant"
    assert accepted(client, first["access_token"])
    refreshed = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": client_id,
                                                 "refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_json()

    again = exchange(client, client_id, code, verifier, redirect_uri=REDIRECT)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert not accepted(client, first["access_token"])
    assert not accepted(client, refreshed.get_json()["access_token"])
    successor = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": client_id,
                                                 "refresh_token": refreshed.get_json()["refresh_token"]})
    assert successor.status_code == 400 and successor.get_json()["error"] == "invalid_grant"


def test_code_used_twice_by_a_client_without_refresh_revokes_its_access_token(issuer, client, client_id):
    """RFC 6749 §4.1.2 without a refresh family: the one access token is revoked (by its ``jti``),
    once; a third use finds nothing left to revoke and is refused the same way."""
    code, verifier = approved_code(client, client_id, scope="openid")
    first = exchange(client, client_id, code, verifier, redirect_uri=REDIRECT).get_json()
    assert "refresh_token" not in first and accepted(client, first["access_token"])
    for _ in range(2):
        again = exchange(client, client_id, code, verifier, redirect_uri=REDIRECT)
        assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert not accepted(client, first["access_token"])
    jti = pyjwt.decode(first["access_token"], options={"verify_signature": False})["jti"]
    with issuer.app_context():
        assert db.session.query(Revocation).filter_by(kind="jti", value=jti).count() == 1


@pytest.mark.parametrize("verifier", ["é" * 50, "\x00" * 43, "v" * 42, "v" * 129])
def test_used_code_with_a_malformed_verifier_is_invalid_grant(client, client_id, verifier):
    """RFC 6749 §4.1.2 / RFC 7636 §4.1: a used code presented again with a verifier that is not
    one (outside the unreserved characters, or of the wrong length) is ``invalid_grant`` and
    revokes nothing; a non-ASCII one was a 500."""
    code, good = approved_code(client, client_id, scope="openid")
    first = exchange(client, client_id, code, good, redirect_uri=REDIRECT).get_json()
    again = exchange(client, client_id, code, verifier, redirect_uri=REDIRECT)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant", again.get_data(as_text=True)
    assert accepted(client, first["access_token"])
