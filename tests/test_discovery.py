"""RFC 8414 / OIDC Discovery metadata and the RFC 7517 JWKS."""

from __future__ import annotations

from joserfc.jwk import JWKRegistry

from scitoken_issuer.extensions import runtime


def test_metadata_documents_match(client):
    """RFC 8414 §3: both well-known paths serve the same metadata, with ``issuer`` first-class."""
    oidc = client.get("/.well-known/openid-configuration").get_json()
    oauth = client.get("/.well-known/oauth-authorization-server").get_json()
    assert oidc == oauth
    assert oidc["issuer"] == "http://issuer.test"


def test_every_advertised_endpoint_is_served(client):
    """RFC 8414 §2: each advertised endpoint exists on this issuer (no 404)."""
    meta = client.get("/.well-known/openid-configuration").get_json()
    for name, url in meta.items():
        if name.endswith("_endpoint") or name == "jwks_uri":
            path = url.removeprefix("http://issuer.test")
            response = client.open(path, method="GET" if name in ("jwks_uri", "userinfo_endpoint",
                                                                  "authorization_endpoint") else "POST")
            assert response.status_code != 404, name


def test_metadata_advertises_what_is_implemented(client):
    meta = client.get("/.well-known/oauth-authorization-server").get_json()
    assert "client_credentials" in meta["grant_types_supported"]
    assert "password" not in meta["grant_types_supported"]
    assert "implicit" not in meta["grant_types_supported"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert meta["registration_endpoint"].endswith("/auth/client/registration")
    if "authorization_endpoint" in meta:
        assert meta["code_challenge_methods_supported"] == ["S256"]


def test_jwks_keys_carry_kid_alg_use(client):
    """RFC 7517 §4: each key has ``kid``, ``alg`` and ``use``; ``kid`` is the RFC 7638 thumbprint."""
    response = client.get("/auth/certs")
    assert response.status_code == 200
    assert "max-age" in response.headers["Cache-Control"]
    keys = response.get_json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert key["alg"] == "RS256" and key["use"] == "sig" and key["kty"] == "RSA"
    assert "d" not in key and "p" not in key  # public parts only
    imported = JWKRegistry.import_key({k: v for k, v in key.items() if k in ("kty", "n", "e")})
    assert imported.thumbprint() == key["kid"]
    assert runtime().keys.view().current.kid == key["kid"]
