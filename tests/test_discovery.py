"""RFC 8414 / OIDC Discovery metadata and the RFC 7517 JWKS."""

from __future__ import annotations

from joserfc.jwk import JWKRegistry

from scitoken_issuer.extensions import db, runtime


def test_metadata_documents_match(client):
    """RFC 8414 §3: both well-known paths serve the same metadata, with ``issuer`` first-class."""
    oidc = client.get("/.well-known/openid-configuration").get_json()
    oauth = client.get("/.well-known/oauth-authorization-server").get_json()
    assert oidc == oauth
    assert oidc["issuer"] == "http://issuer.test"


def test_issuer_with_a_path_has_its_metadata_at_the_path_inserted_address(tmp_path):
    """RFC 8414 §3.1: issuer ``https://host/tokens`` → metadata at
    ``/.well-known/oauth-authorization-server/tokens`` (behind a proxy that forwards it), and
    OIDC Discovery §4 at ``/tokens/.well-known/openid-configuration`` (the proxy strips the
    prefix); any other path after the well-known name is 404."""
    from .conftest import make_app

    app = make_app(tmp_path, ISSUER_ADDRESS="https://host.example/tokens/v1")
    client = app.test_client()
    meta = client.get("/.well-known/oauth-authorization-server/tokens/v1")
    assert meta.status_code == 200 and meta.get_json()["issuer"] == "https://host.example/tokens/v1"
    assert meta.get_json() == client.get("/.well-known/openid-configuration").get_json()
    assert meta.get_json()["token_endpoint"] == "https://host.example/tokens/v1/auth/token"
    for other in ("tokens", "other", "tokens/v1/x"):
        assert client.get(f"/.well-known/oauth-authorization-server/{other}").status_code == 404
    plain = make_app(tmp_path / "plain")  # an issuer without a path has no such address
    assert plain.test_client().get("/.well-known/oauth-authorization-server/x").status_code == 404


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


def test_jwks_is_cacheable_for_an_hour_with_an_etag(client):
    """WLCG JWT profile §4.3.1: the key set may be cached for at least an hour; that is never
    longer than the next key is published before it signs (KEY_PUBLISH_HOURS >= 1). RFC 9110
    §13.1.2: an unchanged set revalidates with 304."""
    response = client.get("/auth/certs")
    directives = dict(part.strip().partition("=")[::2] for part in response.headers["Cache-Control"].split(","))
    assert "public" in directives
    max_age = int(directives["max-age"])
    assert 3600 <= max_age <= runtime().keys.publish_seconds
    etag = response.headers["ETag"]
    again = client.get("/auth/certs", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    runtime().keys.rotate()
    db.session.commit()
    changed = client.get("/auth/certs", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag and len(changed.get_json()["keys"]) == 2


def test_oidc_metadata_fields(client):
    """OIDC Discovery §3: RS256 for ID tokens, no request objects (``request_uri_parameter_supported``
    defaults to true, so it is said), introspection only for authenticated clients (RFC 7662 §2.1)."""
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert meta["request_uri_parameter_supported"] is False and meta["request_parameter_supported"] is False
    assert "none" not in meta["introspection_endpoint_auth_methods_supported"]
    assert {"jti", "email", "wlcg.ver"} <= set(meta["claims_supported"])
