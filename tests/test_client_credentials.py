"""RFC 6749 §4.4 client credentials through ``/auth/token``, with docs/tokens.md on top:
scopes only from the client's registered policy, both token profiles, every claim, and a
signature that an independent JOSE library (PyJWT) verifies against the published JWKS."""

from __future__ import annotations

import jwt as pyjwt
import pytest

from .conftest import basic_auth

TOKEN = "/auth/token"
ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
SCITOKENS_ANY = "ANY"
CLAIMS = ("iss", "sub", "aud", "iat", "nbf", "exp", "jti", "scope", "client_id")


def request_token(client, registered, secret, **form):
    form.setdefault("grant_type", "client_credentials")
    return client.post(TOKEN, data=form, headers=basic_auth(registered.client_id, secret))


def verify(client, token: str, audience=ANY_AUDIENCE) -> dict:
    """Verify as a storage service does: the key by ``kid`` from the published JWKS, with PyJWT."""
    header = pyjwt.get_unverified_header(token)
    jwks = client.get("/auth/certs").get_json()
    jwk = pyjwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    assert header["alg"] == jwk.algorithm_name
    return pyjwt.decode(token, jwk.key, algorithms=[header["alg"]], audience=audience,
                        issuer="http://issuer.test", options={"require": list(CLAIMS)})


def test_client_secret_basic(client, make_client):
    """RFC 6749 §4.4.2/§4.4.3 with §2.3.1 HTTP Basic: a Bearer token, no refresh token, no-store."""
    registered, secret = make_client()
    response = request_token(client, registered, secret)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "refresh_token" not in body  # RFC 6749 §4.4.3: SHOULD NOT be included
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1
    assert response.headers["Pragma"] == "no-cache"
    claims = verify(client, body["access_token"])
    assert claims["sub"] == claims["client_id"] == registered.client_id


def test_client_secret_post(client, make_client):
    """RFC 6749 §2.3.1: credentials in the form body, for a client registered that way."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    response = client.post(TOKEN, data={"grant_type": "client_credentials", "client_id": registered.client_id,
                                        "client_secret": secret})
    assert response.status_code == 200, response.get_json()
    verify(client, response.get_json()["access_token"])


def test_every_spec_claim_is_present(client, make_client):
    """docs/tokens.md: iss, sub, aud, iat, nbf, exp, jti, scope, client_id; exp - iat is the lifetime."""
    registered, secret = make_client()
    first = verify(client, request_token(client, registered, secret).get_json()["access_token"])
    second = verify(client, request_token(client, registered, secret).get_json()["access_token"])
    for name in CLAIMS:
        assert name in first, name
    assert first["iss"] == "http://issuer.test"
    assert first["aud"] == ANY_AUDIENCE
    assert first["nbf"] <= first["iat"] < first["exp"] and first["exp"] - first["iat"] == 3600
    assert first["jti"] != second["jti"]


def test_no_scope_gives_whole_registered_scope(client, make_client):
    """RFC 6749 §3.3: with no ``scope`` the server uses its documented default, the registered scope."""
    registered, secret = make_client(scope="storage.read:/data storage.create:/data/out compute.read")
    body = request_token(client, registered, secret).get_json()
    assert body["scope"].split() == ["storage.read:/data", "storage.create:/data/out", "compute.read"]
    assert verify(client, body["access_token"])["scope"] == body["scope"]


def test_narrower_scope_inside_policy(client, make_client):
    """docs/tokens.md: a subset, or a path below a registered path, is within the client's policy."""
    registered, secret = make_client(scope="storage.read:/data storage.create:/data/out compute.read")
    body = request_token(client, registered, secret, scope="storage.read:/data/run1 compute.read").get_json()
    assert body["scope"] == "storage.read:/data/run1 compute.read"
    assert verify(client, body["access_token"])["scope"] == body["scope"]


@pytest.mark.parametrize("scope,refused", [
    ("storage.read:/etc", "storage.read:/etc"),
    ("storage.read:/data storage.create:/data", "storage.create:/data"),  # create only under /data/out
    ("storage.modify:/data/out", "storage.modify:/data/out"),
    ("storage.read:/database", "storage.read:/database"),  # a sibling with the same prefix
    ("compute.read compute.cancel", "compute.cancel"),
    ("openid", "openid"),
    ("wlcg.groups", "wlcg.groups"),
])
def test_scope_outside_policy_is_refused(client, make_client, scope, refused):
    """RFC 6749 §5.2: never unchecked — ``invalid_scope`` naming the first refused scope, no token."""
    registered, secret = make_client(scope="storage.read:/data storage.create:/data/out compute.read")
    response = request_token(client, registered, secret, scope=scope)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_scope"
    assert refused in body["error_description"].split()
    assert "access_token" not in body
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("scope", ["storage.read:data", "storage.read:/data/../etc", "storage.delete:/data",
                                   "STORAGE.READ:/data"])
def test_malformed_scope_is_invalid_scope(client, make_client, scope):
    """RFC 6749 §5.2 ``invalid_scope``: malformed scopes never reach the policy."""
    registered, secret = make_client()
    response = request_token(client, registered, secret, scope=scope)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


def test_client_without_registered_scope_gets_nothing(client, make_client):
    """RFC 6749 §4.4 / client policy: a client acting for itself gets nothing it did not register."""
    registered, secret = make_client(scope=None)
    response = request_token(client, registered, secret, scope="storage.read:/data")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope"


def test_unprivileged_client_is_unauthorized(client, make_client):
    """RFC 6749 §5.2 ``unauthorized_client``: authenticated, but not allowed this grant type."""
    registered, secret = make_client(grant_types=["refresh_token"], admin=False, scope="storage.read:/data")
    response = request_token(client, registered, secret)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unauthorized_client"
    assert "access_token" not in response.get_json()


def test_public_client_is_refused(client, make_client):
    """RFC 6749 §4.4: client credentials is for confidential clients only. A public client cannot
    authenticate by any method the grant accepts, so the answer is RFC 6749 §5.2 ``invalid_client``."""
    registered, _ = make_client(grant_types=["refresh_token"], token_endpoint_auth_method="none")
    response = client.post(TOKEN, data={"grant_type": "client_credentials", "client_id": registered.client_id})
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_client", "unauthorized_client")
    assert "access_token" not in response.get_json()


@pytest.mark.parametrize("grant", ["client_credentials"])
def test_public_client_cannot_even_be_registered_privileged(make_client, grant):
    """RFC 6749 §4.4: client credentials only for confidential clients (refused at registration)."""
    from scitoken_issuer.services.clients import ClientMetadataError

    with pytest.raises(ClientMetadataError):
        make_client(grant_types=[grant], token_endpoint_auth_method="none")


def test_audience_narrowing(client, make_client):
    """docs/tokens.md "Audience": ``aud`` narrowed by the ``audience`` parameter (default: the
    profile's "any" audience)."""
    registered, secret = make_client()
    one = request_token(client, registered, secret, audience="https://se.example.org").get_json()
    assert verify(client, one["access_token"], audience="https://se.example.org")["aud"] == "https://se.example.org"
    two = request_token(client, registered, secret, audience="https://a.example.org https://b.example.org")
    claims = verify(client, two.get_json()["access_token"], audience="https://b.example.org")
    assert claims["aud"] == ["https://a.example.org", "https://b.example.org"]


@pytest.mark.parametrize("audience", ["é", "a" * 300, " ".join(f"https://s{i}.example.org" for i in range(6))])
def test_malformed_audience_is_invalid_request(client, make_client, audience):
    """RFC 6749 §5.2 ``invalid_request`` for a malformed ``audience`` parameter."""
    registered, secret = make_client()
    response = request_token(client, registered, secret, audience=audience)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("app_config", [{"AUDIENCE": "https://only.example.org"}])
def test_audience_cannot_change_a_fixed_default(client, make_client, app_config):
    """docs/tokens.md "Audience": a site's fixed ``AUDIENCE`` is the only audience a client may ask."""
    registered, secret = make_client()
    refused = request_token(client, registered, secret, audience="https://se.example.org")
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_request"
    same = request_token(client, registered, secret, audience="https://only.example.org")
    assert verify(client, same.get_json()["access_token"], audience="https://only.example.org")
    default = request_token(client, registered, secret).get_json()
    assert verify(client, default["access_token"], audience="https://only.example.org")["aud"] == \
        "https://only.example.org"


def test_wlcg_profile(client, make_client):
    """docs/tokens.md, WLCG profile: ``wlcg.ver`` "1.0", storage.* scopes, no SciTokens ``ver``."""
    registered, secret = make_client(token_profile="wlcg",
                                     scope="storage.read:/data storage.create:/data/out storage.modify:/data/out")
    claims = verify(client, request_token(client, registered, secret).get_json()["access_token"])
    assert claims["wlcg.ver"] == "1.0" and "ver" not in claims
    assert claims["scope"].split() == ["storage.read:/data", "storage.create:/data/out", "storage.modify:/data/out"]


def test_scitokens_profile(client, make_client):
    """docs/scopes.md SciTokens 2.0 profile: ``ver`` "scitoken:2.0"; storage.read → read,
    storage.create → create (never write), storage.modify → write; no ``wlcg.ver``; ``aud``
    defaults to ``ANY`` (docs/tokens.md, "Audience")."""
    registered, secret = make_client(token_profile="scitokens",
                                     scope="storage.read:/data storage.create:/data/out storage.modify:/data/out")
    body = request_token(client, registered, secret).get_json()
    claims = verify(client, body["access_token"], audience=SCITOKENS_ANY)
    assert claims["ver"] == "scitoken:2.0" and "wlcg.ver" not in claims and claims["aud"] == SCITOKENS_ANY
    scopes = claims["scope"].split()
    assert scopes == ["read:/data", "create:/data/out", "write:/data/out"]
    assert body["scope"] == claims["scope"]


@pytest.mark.parametrize("app_config", [{"TOKEN_PROFILE": "scitokens"}])
def test_default_profile_from_settings(client, make_client, app_config):
    """``TOKEN_PROFILE``: the issuer default applies when the client has no override."""
    registered, secret = make_client(scope="storage.read:/data")
    claims = verify(client, request_token(client, registered, secret).get_json()["access_token"],
                    audience=SCITOKENS_ANY)
    assert claims["ver"] == "scitoken:2.0" and claims["scope"] == "read:/data"


@pytest.mark.parametrize("app_config", [{"KEY_TYPE": "ES256"}])
def test_es256_token_verifies(client, make_client, app_config):
    """``KEY_TYPE`` ES256: a P-256 signature, verified with the published JWK."""
    registered, secret = make_client()
    token = request_token(client, registered, secret).get_json()["access_token"]
    assert pyjwt.get_unverified_header(token)["alg"] == "ES256"
    verify(client, token)


def test_token_is_not_signed_by_another_key(client, make_client):
    """RFC 7515 §5.2: a tampered token fails verification with the published key."""
    registered, secret = make_client()
    token = request_token(client, registered, secret).get_json()["access_token"]
    header, payload, signature = token.split(".")
    forged = pyjwt.api_jws.base64url_encode(
        pyjwt.api_jws.base64url_decode(payload).replace(b"compute.read", b"compute.write")).decode()
    with pytest.raises(pyjwt.InvalidSignatureError):
        verify(client, f"{header}.{forged}.{signature}")


def test_issuance_is_audited_without_the_token(client, make_client, caplog):
    """Audit: one audit line per issuance (client, scopes, jti), never the token itself."""
    registered, secret = make_client()
    with caplog.at_level("INFO", logger="scitoken_issuer.audit"):
        body = request_token(client, registered, secret).get_json()
    jti = pyjwt.decode(body["access_token"], options={"verify_signature": False})["jti"]
    lines = [r.getMessage() for r in caplog.records if r.name == "scitoken_issuer.audit"]
    assert any(jti in line and '"granted"' in line for line in lines)
    assert not any(body["access_token"] in line or secret in line for line in lines)
