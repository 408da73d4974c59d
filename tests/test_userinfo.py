"""OIDC UserInfo (Core §5.3) at ``/auth/userinfo`` as an RFC 6750 protected resource."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.oauth2.oidc import IssuerIDToken
from scitoken_issuer.services.tokens import TokenRequest

USERINFO = "/auth/userinfo"


def mint(scope: str, subject: str = "alice", **extra) -> str:
    minted = runtime().tokens.mint(TokenRequest(subject=subject, client_id="portal", scopes=scope.split(),
                                                grant_type="authorization_code", extra_claims=extra))
    db.session.commit()
    return minted.token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_rfc6750(response, status: int, error: str) -> str:
    """The RFC 6750 §3 answer: status, JSON error (RFC 6749 §5.2 shape), no-store, a Bearer challenge."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error and body.get("error_description")
    assert response.headers["Cache-Control"] == "no-store"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    return challenge


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic YWxpY2U6cHc="}], ids=["none", "basic"])
def test_no_token_is_a_bare_bearer_challenge(client, headers):
    """RFC 6750 §3.1: a request without a bearer token gets 401 and a challenge with no error
    attributes (the client sent no credentials to be wrong about)."""
    challenge = assert_rfc6750(client.get(USERINFO, headers=headers), 401, "invalid_token")
    assert challenge == "Bearer"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 20000, ""], ids=["garbage", "dots", "huge", "empty"])
def test_bad_token_is_invalid_token(client, token):
    """RFC 6750 §3.1: a malformed or unknown token is 401 ``error="invalid_token"``."""
    challenge = assert_rfc6750(client.get(USERINFO, headers=bearer(token)), 401, "invalid_token")
    assert 'error="invalid_token"' in challenge


def test_expired_and_revoked_tokens_are_invalid_token(client):
    """RFC 6750 §3.1: expired or revoked tokens are 401 ``invalid_token``."""
    now = int(time.time())
    expired = mint("openid", iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert 'error="invalid_token"' in assert_rfc6750(client.get(USERINFO, headers=bearer(expired)), 401,
                                                      "invalid_token")
    token = mint("openid")
    assert client.get(USERINFO, headers=bearer(token)).status_code == 200
    claims = runtime().tokens.verify(token)
    runtime().revocations.revoke_token(claims["jti"], claims["exp"])
    db.session.commit()
    assert_rfc6750(client.get(USERINFO, headers=bearer(token)), 401, "invalid_token")


def test_token_without_openid_is_insufficient_scope(client):
    """RFC 6750 §3.1: a valid token lacking the scope is 403 ``insufficient_scope`` naming it."""
    challenge = assert_rfc6750(client.get(USERINFO, headers=bearer(mint("storage.read:/data"))), 403,
                               "insufficient_scope")
    assert 'error="insufficient_scope"' in challenge and 'scope="openid"' in challenge


def test_id_token_is_not_an_access_token(client):
    """An ID token (signed by this issuer, with a ``jti``) is not accepted as an access token."""

    class Registered:
        client_id = "portal"
        client_metadata: dict = {}

    with client.application.test_request_context():
        claims = IssuerIDToken().get_client_claims(Registered())
        key = runtime().keys.id_token_key()
        id_token = jwt.encode({"alg": key.alg, "kid": key.kid}, {**claims, "sub": "alice", "scope": "openid"},
                              key.private)
    assert_rfc6750(client.get(USERINFO, headers=bearer(id_token)), 401, "invalid_token")


def test_email_scope_returns_the_users_file_email(client):
    """OIDC Core §5.4: ``email`` for the development users comes from config/dev-users.json."""
    body = client.get(USERINFO, headers=bearer(mint("openid email profile"))).get_json()
    assert body == {"sub": "alice", "email": "alice@example.org", "preferred_username": "alice"}
    assert "email" not in client.get(USERINFO, headers=bearer(mint("openid"))).get_json()


def test_form_body_token_on_post(client):
    """RFC 6750 §2.2: the token may come as the ``access_token`` form field of a POST; sending it
    two ways at once is ``invalid_request`` (RFC 6750 §2)."""
    token = mint("openid")
    response = client.post(USERINFO, data={"access_token": token})
    assert response.status_code == 200 and response.get_json()["sub"] == "alice"
    both = client.post(USERINFO, data={"access_token": token}, headers=bearer(token))
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_request"


def test_repeated_form_token_is_invalid_request(client):
    """RFC 6750 §3.1: a request that "repeats the same parameter" is ``invalid_request`` (400),
    not answered for the first of two tokens."""
    token = mint("openid")
    response = client.post(USERINFO, data=f"access_token={token}&access_token={mint('openid', 'bob')}",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store" and "sub" not in response.get_json()


def test_other_http_errors_are_still_rfc6749_json(client):
    """The app-wide handler answers bare HTTP errors as RFC 6749 §5.2 JSON (unchanged)."""
    response = client.put(USERINFO)
    assert response.status_code == 405 and response.get_json()["error"] == "invalid_request"
    assert "Allow" in response.headers
