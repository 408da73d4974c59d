"""RFC 7662 token introspection at ``/auth/introspect``."""

from __future__ import annotations

import time

import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.tokens import TokenRequest

from .conftest import basic_auth

INTROSPECT = "/auth/introspect"


def issue(client, registered, secret, **form) -> str:
    form.setdefault("grant_type", "client_credentials")
    response = client.post("/auth/token", data=form, headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def introspect(client, registered, secret, token, **form):
    return client.post(INTROSPECT, data={"token": token, **form}, headers=basic_auth(registered.client_id, secret))


def assert_inactive(response) -> None:
    """RFC 7662 §2.2: an inactive token is ``{"active": false}`` and nothing else, with 200."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"active": False}


@pytest.fixture
def pair(make_client):
    return make_client()


def test_active_token(client, pair):
    """RFC 7662 §2.2: active with the token's scope, client_id, sub, exp, iat, iss, jti, aud."""
    registered, secret = pair
    token = issue(client, registered, secret, scope="storage.read:/data compute.read",
                  audience="https://se.example.org")
    response = introspect(client, registered, secret, token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["active"] is True
    assert body["scope"] == "storage.read:/data compute.read"
    assert body["client_id"] == body["sub"] == registered.client_id
    assert body["iss"] == "http://issuer.test"
    assert body["aud"] == "https://se.example.org"
    assert body["token_type"] == "Bearer"
    assert body["iat"] <= time.time() < body["exp"]
    assert isinstance(body["jti"], str) and body["jti"]


def test_hint_does_not_hide_the_token(client, pair):
    """RFC 7662 §2.1: a wrong ``token_type_hint`` only changes the search order."""
    registered, secret = pair
    token = issue(client, registered, secret)
    body = introspect(client, registered, secret, token, token_type_hint="refresh_token").get_json()
    assert body["active"] is True


def test_client_secret_post_caller(client, make_client):
    """RFC 7662 §2.1 with RFC 6749 §2.3.1 credentials in the body."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    token = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": registered.client_id,
                                             "client_secret": secret}).get_json()["access_token"]
    response = client.post(INTROSPECT, data={"token": token, "client_id": registered.client_id,
                                             "client_secret": secret})
    assert response.get_json()["active"] is True


def test_token_of_another_client_reads_inactive(client, make_client):
    """RFC 7662 §2.2/§4: a client may only learn about its own tokens; others read as inactive."""
    owner, owner_secret = make_client()
    other, other_secret = make_client()
    token = issue(client, owner, owner_secret)
    assert_inactive(introspect(client, other, other_secret, token))
    assert introspect(client, owner, owner_secret, token).get_json()["active"] is True


def test_public_client_may_not_introspect(client, make_client):
    """RFC 7662 §2.1: introspection requires client authentication, which a public client (client_id
    only) cannot give: 401 ``invalid_client``, even for its own token; discovery lists no ``none``."""
    owner, owner_secret = make_client()
    public, _ = make_client(grant_types=["refresh_token"], token_endpoint_auth_method="none")
    own = runtime().tokens.mint(TokenRequest(subject="alice", client_id=public.client_id, scopes=["openid"],
                                             grant_type="authorization_code")).token
    db.session.commit()
    for token in (issue(client, owner, owner_secret), own):
        response = client.post(INTROSPECT, data={"token": token, "client_id": public.client_id})
        assert response.status_code == 401
        assert response.get_json()["error"] == "invalid_client" and "active" not in response.get_json()
    methods = client.get("/.well-known/openid-configuration").get_json()["introspection_endpoint_auth_methods_supported"]
    assert "none" not in methods and "client_secret_basic" in methods


def test_expired_token_is_inactive(client, pair):
    """RFC 7662 §2.2: an expired token is not active."""
    registered, secret = pair
    now = int(time.time())
    minted = runtime().tokens.mint(TokenRequest(
        subject=registered.client_id, client_id=registered.client_id, scopes=["compute.read"],
        grant_type="client_credentials",
        extra_claims={"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}))
    db.session.commit()
    assert_inactive(introspect(client, registered, secret, minted.token))


def test_token_signed_by_unknown_key_is_inactive(client, pair):
    """RFC 7662 §2.2: a JWT this issuer did not sign is not active, even with a known jti."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    registered, secret = pair
    genuine = issue(client, registered, secret)
    claims = runtime().tokens.verify(genuine)
    forged = jwt.encode({"alg": "RS256", "kid": "forged"}, claims, RSAKey.generate_key(2048))
    assert_inactive(introspect(client, registered, secret, forged))


@pytest.mark.parametrize("token", [
    "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.", "x" * 20_000, "é\x00\"\\", " ",
    "unknown-refresh-token-value-0123456789abcdef",
])
def test_garbage_and_unknown_tokens_are_inactive(client, pair, token):
    """RFC 7662 §2.2: anything that is not a live token of the caller is ``{"active": false}``."""
    registered, secret = pair
    assert_inactive(introspect(client, registered, secret, token))


def test_missing_token_parameter(client, pair):
    """RFC 7662 §2.1: ``token`` is REQUIRED; RFC 6749 §5.2 ``invalid_request``."""
    registered, secret = pair
    response = client.post(INTROSPECT, data={}, headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request" and body.get("error_description")


def test_unauthenticated_caller_is_refused(client, pair):
    """RFC 7662 §2.1: the endpoint requires client authentication; 401 ``invalid_client``."""
    registered, secret = pair
    token = issue(client, registered, secret)
    for headers in ({}, basic_auth(registered.client_id, "wrong"), basic_auth("nobody", secret),
                    {"Authorization": "Basic !!!"}):
        response = client.post(INTROSPECT, data={"token": token}, headers=headers)
        assert response.status_code == 401, headers
        body = response.get_json()
        assert body["error"] == "invalid_client" and body.get("error_description")
        assert response.headers["Cache-Control"] == "no-store"
        assert "active" not in body


def test_bearer_token_is_not_client_authentication(client, pair):
    """RFC 7662 §2.1 allows a bearer token; this issuer requires client credentials (docs/conformance.md)."""
    registered, secret = pair
    token = issue(client, registered, secret)
    response = client.post(INTROSPECT, data={"token": token}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_get_is_not_allowed(client):
    """RFC 7662 §2.1: introspection requests are POSTs."""
    response = client.get(INTROSPECT, query_string={"token": "x"})
    assert response.status_code == 405
    assert response.get_json()["error"] == "invalid_request"


def test_a_token_introspected_again_is_checked_once_and_still_expires_and_revokes(client, pair, monkeypatch):
    """docs/revocation.md: what a token's text proves is remembered per process, expiry and the
    revocation list are not: the second introspection verifies no signature, a revocation after
    the first reads inactive at once, and so does the token once its ``exp`` passes."""
    from joserfc import jwt

    from scitoken_issuer.services import tokens as token_service

    registered, secret = pair
    token = issue(client, registered, secret)
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr(token_service.jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    keys = runtime().keys
    start = time.time()
    for second in range(3):  # the key store hands out a new list of the same keys every second
        monkeypatch.setattr(keys, "clock", lambda: start + 2 * second)
        assert introspect(client, registered, secret, token).get_json()["active"] is True
    assert len(decoded) == 1
    exp = pyjwt_claims(token)["exp"]
    monkeypatch.setattr(token_service.time, "time", lambda: exp + 1)
    assert_inactive(introspect(client, registered, secret, token))
    monkeypatch.undo()

    revoked = issue(client, registered, secret)
    assert introspect(client, registered, secret, revoked).get_json()["active"] is True
    rt = runtime()
    claims = rt.tokens.verify(revoked)
    rt.revocations.revoke_token(claims["jti"], claims["exp"])
    db.session.commit()
    assert_inactive(introspect(client, registered, secret, revoked))


def test_a_remembered_token_is_inactive_once_its_key_is_no_longer_published(client, pair, monkeypatch):
    """docs/revocation.md: the memory of checked tokens belongs to one set of published keys; a
    token whose key left the set reads inactive although it was checked before."""
    registered, secret = pair
    token = issue(client, registered, secret)
    assert introspect(client, registered, secret, token).get_json()["active"] is True
    keys = runtime().keys
    kid = pyjwt_claims(token, header=True)["kid"]
    published = [k for k in keys.published() if k.kid != kid]
    monkeypatch.setattr(keys, "published", lambda *a, **k: published)
    assert_inactive(introspect(client, registered, secret, token))


def pyjwt_claims(token: str, header: bool = False) -> dict:
    import jwt as pyjwt

    return pyjwt.get_unverified_header(token) if header else pyjwt.decode(token, options={"verify_signature": False})
