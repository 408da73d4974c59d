"""RFC 7009 token revocation at ``/auth/revoke``, and its audit line (docs/errors.md)."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest

from .conftest import basic_auth

REVOKE = "/auth/revoke"


def issue(client, registered, secret) -> str:
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def revoke(client, registered, secret, token, **form):
    return client.post(REVOKE, data={"token": token, **form}, headers=basic_auth(registered.client_id, secret))


def active(client, registered, secret, token) -> bool:
    response = client.post("/auth/introspect", data={"token": token}, headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200
    return response.get_json()["active"]


@pytest.fixture
def pair(make_client):
    return make_client()


def test_revoked_access_token_is_inactive(client, pair):
    """RFC 7009 §2.2: 200 on success; afterwards RFC 7662 introspection reports the token inactive."""
    registered, secret = pair
    token = issue(client, registered, secret)
    other = issue(client, registered, secret)
    assert active(client, registered, secret, token)
    response = revoke(client, registered, secret, token, token_type_hint="access_token")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert not active(client, registered, secret, token)
    assert active(client, registered, secret, other)  # only that token


def test_revoking_twice_is_fine(client, pair):
    """RFC 7009 §2.2: revoking an already revoked token still answers 200."""
    registered, secret = pair
    token = issue(client, registered, secret)
    assert revoke(client, registered, secret, token).status_code == 200
    assert revoke(client, registered, secret, token).status_code == 200
    assert not active(client, registered, secret, token)


def test_wrong_hint_still_revokes(client, pair):
    """RFC 7009 §2.1: with a wrong hint the server extends its search to other token types."""
    registered, secret = pair
    token = issue(client, registered, secret)
    assert revoke(client, registered, secret, token, token_type_hint="refresh_token").status_code == 200
    assert not active(client, registered, secret, token)


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 20_000, "é\x00\"\\"])
def test_unknown_or_garbage_token_answers_200(client, pair, token):
    """RFC 7009 §2.2: an invalid token is answered 200 (the client can do nothing about it)."""
    registered, secret = pair
    response = revoke(client, registered, secret, token)
    assert response.status_code == 200


def test_unsupported_hint(client, pair):
    """RFC 7009 §2.2.1: a hint the server does not know is ``unsupported_token_type``."""
    registered, secret = pair
    token = issue(client, registered, secret)
    response = revoke(client, registered, secret, token, token_type_hint="id_token")
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_token_type"
    assert active(client, registered, secret, token)


def test_token_of_another_client_is_refused(client, make_client):
    """RFC 7009 §2.1: the token must have been issued to the requesting client; otherwise refused
    and the token stays valid."""
    owner, owner_secret = make_client()
    other, other_secret = make_client()
    token = issue(client, owner, owner_secret)
    response = revoke(client, other, other_secret, token)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_grant" and body["error_description"]
    assert active(client, owner, owner_secret, token)


def test_missing_token_parameter(client, pair):
    """RFC 7009 §2.1: ``token`` is REQUIRED; RFC 6749 §5.2 ``invalid_request``."""
    registered, secret = pair
    response = client.post(REVOKE, data={}, headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_unauthenticated_caller_is_refused(client, pair):
    """RFC 7009 §2.1: the client authenticates (RFC 6749 §2.3); 401 ``invalid_client`` otherwise."""
    registered, secret = pair
    token = issue(client, registered, secret)
    for headers in ({}, basic_auth(registered.client_id, "wrong"), basic_auth("nobody", secret)):
        response = client.post(REVOKE, data={"token": token}, headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"] == "invalid_client"
    assert active(client, registered, secret, token)


def test_revocation_audit_line(client, pair, caplog):
    """docs/errors.md: one structured audit line per revocation with subject, client and jti; never the token."""
    registered, secret = pair
    token = issue(client, registered, secret)
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    with caplog.at_level("INFO", logger="scitoken_issuer.audit"):
        assert revoke(client, registered, secret, token).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "scitoken_issuer.audit"]
    revocations = [json.loads(line) for line in lines if json.loads(line)["event"] == "revoke"]
    assert len(revocations) == 1
    record = revocations[0]
    assert record["jti"] == jti and record["client_id"] == registered.client_id
    assert record["sub"] == registered.client_id and record["outcome"] == "revoked"
    for line in lines:
        assert token not in line and token.split(".")[2] not in line and secret not in line


def test_public_client_revokes_its_own_token(client, make_client):
    """RFC 7009 §2.1: a public client identifies itself with ``client_id`` and may revoke its own
    token (introspection, unlike revocation, needs client authentication: RFC 7662 §2.1)."""
    from scitoken_issuer.extensions import db, runtime
    from scitoken_issuer.services.tokens import TokenRequest

    public, _ = make_client(grant_types=["refresh_token"], token_endpoint_auth_method="none")
    minted = runtime().tokens.mint(TokenRequest(subject="alice", client_id=public.client_id, scopes=["openid"],
                                                grant_type="authorization_code"))
    db.session.commit()
    response = client.post(REVOKE, data={"token": minted.token, "client_id": public.client_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert runtime().revocations.is_revoked(runtime().tokens.verify(minted.token))
