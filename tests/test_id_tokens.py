"""OpenID Connect ID tokens: RS256 whatever ``KEY_TYPE`` signs access tokens (OIDC Core §15.1,
Discovery §3), with ``jti``, ``wlcg.ver`` for WLCG-profile clients, and the development user's
``email``. See docs/conformance.md (ID tokens)."""

from __future__ import annotations

import jwt
import pytest

from scitoken_issuer.extensions import db, runtime

from .conftest import basic_auth, make_app
from .support.dev_login import approve, authorize_url, pkce, redirect_params, sign_in

REDIRECT = "https://portal.example.org/cb"
SCOPE = "openid email profile"


@pytest.fixture(params=["RS256", "ES256"])
def issuer(request, tmp_path):
    app = make_app(tmp_path, KEY_TYPE=request.param)
    yield app
    with app.app_context():
        db.engine.dispose()


def register(app, profile: str | None = None) -> tuple[str, str]:
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "portal", "grant_types": ["authorization_code"], "scope": SCOPE,
             "redirect_uris": [REDIRECT], **({"token_profile": profile} if profile else {})},
            admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


def code_flow(app, client_id: str, secret: str, nonce: str = "n-1") -> dict:
    browser = app.test_client()
    sign_in(browser, "alice")
    verifier, challenge = pkce()
    params = redirect_params(approve(browser, authorize_url(
        client_id=client_id, redirect_uri=REDIRECT, scope=SCOPE, nonce=nonce, code_challenge=challenge,
        code_challenge_method="S256")), REDIRECT)
    response = browser.post("/auth/token", headers=basic_auth(client_id, secret), data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": verifier})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def verify_id_token(app, id_token: str, client_id: str) -> dict:
    """As a relying party does (OIDC Core §3.1.3.7): the JWKS key by ``kid``, RS256 only."""
    published = jwt.PyJWKSet.from_dict(app.test_client().get("/auth/certs").get_json())
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(k for k in published.keys if k.key_id == kid)
    return jwt.decode(id_token, key.key, algorithms=["RS256"], audience=client_id, issuer="http://issuer.test")


def test_id_token_is_rs256_whatever_signs_access_tokens(issuer):
    """OIDC Core §15.1: the ID token is RS256 and verifies with a published RS256 key, while the
    access token uses ``KEY_TYPE``; discovery's ``id_token_signing_alg_values_supported`` says RS256."""
    client_id, secret = register(issuer)
    tokens = code_flow(issuer, client_id, secret)
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == issuer.config["KEY_TYPE"]
    assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"
    claims = verify_id_token(issuer, tokens["id_token"], client_id)
    assert claims["sub"] == "alice" and claims["nonce"] == "n-1"
    meta = issuer.test_client().get("/.well-known/openid-configuration").get_json()
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]


def test_id_token_claims(issuer):
    """ID tokens carry a unique ``jti``, ``wlcg.ver`` 1.0 for a WLCG-profile client (WLCG JWT
    profile §3), ``email`` from the users file for the ``email`` scope (OIDC Core §5.4)."""
    client_id, secret = register(issuer)
    first = verify_id_token(issuer, code_flow(issuer, client_id, secret, "n-1")["id_token"], client_id)
    second = verify_id_token(issuer, code_flow(issuer, client_id, secret, "n-2")["id_token"], client_id)
    assert first["jti"] and first["jti"] != second["jti"]
    assert first["wlcg.ver"] == "1.0"
    assert first["email"] == "alice@example.org" and first["preferred_username"] == "alice"


def test_scitokens_profile_client_gets_no_wlcg_ver(issuer):
    """A SciTokens-profile client's ID token has ``jti`` but no WLCG claims."""
    client_id, secret = register(issuer, profile="scitokens")
    claims = verify_id_token(issuer, code_flow(issuer, client_id, secret)["id_token"], client_id)
    assert claims["jti"] and "wlcg.ver" not in claims
