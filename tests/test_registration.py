"""RFC 7591 dynamic registration and RFC 7592 client configuration."""

from __future__ import annotations

import pytest

from scitoken_issuer.extensions import runtime

from .conftest import ADMIN_TOKEN, basic_auth

REG = "/auth/client/registration"
CLI_CLIENT = {"client_name": "oidc-agent", "redirect_uris": ["http://127.0.0.1:4242/"],
              "grant_types": ["authorization_code", "refresh_token",
                              "urn:ietf:params:oauth:grant-type:device_code"],
              "scope": "openid offline_access storage.read:/data"}


def register(client, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(REG, json=body, headers=headers)


def test_register_returns_credentials_and_management_uri(client):
    """RFC 7591 §3.2.1: client_id, secret, issue time; RFC 7592 §3: management URI and token."""
    response = register(client, CLI_CLIENT)
    assert response.status_code == 201
    body = response.get_json()
    assert body["client_id"] and len(body["client_secret"]) >= 43  # 256 bits, base64url
    assert body["client_secret_expires_at"] == 0 and body["client_id_issued_at"] > 0
    assert body["registration_client_uri"] == f"http://issuer.test{REG}/{body['client_id']}"
    assert body["redirect_uris"] == CLI_CLIENT["redirect_uris"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    stored = runtime().clients.get(body["client_id"])
    assert stored.client_secret_hash != body["client_secret"]  # stored as a keyed hash only
    assert runtime().clients.check_secret(stored, body["client_secret"])
    assert not runtime().clients.check_secret(stored, body["client_secret"] + "x")


def test_public_client_gets_no_secret(client):
    response = register(client, {**CLI_CLIENT, "token_endpoint_auth_method": "none"})
    assert response.status_code == 201
    assert "client_secret" not in response.get_json()


@pytest.mark.parametrize("grant", ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"])
def test_anonymous_caller_cannot_take_privileged_grants(client, grant):
    """docs/registration.md: privileged grants are given only by an administrator."""
    response = register(client, {"grant_types": [grant], "scope": "storage.read:/"})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_client_metadata" and "administrator" in body["error_description"]


def test_admin_token_may_register_privileged_client(client):
    response = register(client, {"grant_types": ["client_credentials"], "scope": "storage.read:/"}, ADMIN_TOKEN)
    assert response.status_code == 201
    assert runtime().clients.get(response.get_json()["client_id"]).source == "admin"


def test_wrong_bearer_token_is_refused(client):
    """RFC 7591 §3 makes the endpoint an RFC 6750 protected resource: a bearer token that is not
    the administrator's is 401 ``invalid_token`` with a Bearer challenge (RFC 6750 §3.1), never a
    silent anonymous registration."""
    response = register(client, CLI_CLIENT, "not-the-admin-token")
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("app_config", [{"REGISTRATION": "closed"}])
def test_closed_registration(client, app_config):
    """docs/registration.md: ``closed`` refuses every HTTP registration (403), admin token included."""
    for token in (None, ADMIN_TOKEN):
        response = register(client, CLI_CLIENT, token)
        assert response.status_code == 403 and response.get_json()["error"] == "access_denied"
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert "registration_endpoint" not in meta


@pytest.mark.parametrize("app_config", [{"REGISTRATION": "admin"}])
def test_admin_only_registration(client, app_config):
    """docs/registration.md: ``admin`` needs the administrator's token; without any token the
    answer is a bare Bearer challenge (RFC 6750 §3.1: no error attribute when none was sent)."""
    response = register(client, CLI_CLIENT)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="http://issuer.test"'
    assert register(client, CLI_CLIENT, ADMIN_TOKEN).status_code == 201


def test_201_body_is_the_metadata_as_registered(client):
    """RFC 7591 §3.2.1: the response holds the metadata as registered — duplicates dropped,
    defaults filled (``response_types``, ``token_endpoint_auth_method``), unknown fields ignored
    (RFC 7591 §2) — and equals what a later read returns (RFC 7592 §3), secret aside."""
    asked = {"client_name": "dupes", "scope": "openid storage.read:/data openid storage.read:/data",
             "grant_types": ["authorization_code", "refresh_token", "authorization_code"],
             "redirect_uris": ["https://app.example.org/cb", "https://app.example.org/cb"],
             "contacts": ["ops@example.org", "ops@example.org"], "not_a_metadata_field": "ignored"}
    response = register(client, asked)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["scope"] == "openid storage.read:/data"
    assert body["redirect_uris"] == ["https://app.example.org/cb"]
    assert body["contacts"] == ["ops@example.org"]
    assert body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert "not_a_metadata_field" not in body
    assert set(body) >= {"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at",
                         "registration_client_uri", "registration_access_token"}
    read = client.get(body["registration_client_uri"].removeprefix("http://issuer.test"),
                      headers={"Authorization": f"Bearer {body['registration_access_token']}"})
    assert read.status_code == 200
    assert read.get_json() == {k: v for k, v in body.items() if k != "client_secret"}
    assert runtime().clients.get(body["client_id"]).client_metadata == {
        k: v for k, v in body.items() if k not in ("client_id", "client_secret", "client_id_issued_at",
                                                   "client_secret_expires_at", "registration_client_uri",
                                                   "registration_access_token")}


def test_client_without_code_grant_registers_no_response_type(client):
    """RFC 7591 §2: an omitted ``response_types`` means ``code``; a device-only client has none,
    so the registered metadata says ``[]`` and the authorization endpoint refuses it."""
    body = register(client, {"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
                             "token_endpoint_auth_method": "none"}).get_json()
    assert body["response_types"] == []
    assert runtime().clients.get(body["client_id"]).check_response_type("code") is False


@pytest.mark.parametrize("field,value,error", [
    ("redirect_uris", ["https://app.example.org/c\tb"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org/cb\r\nSet-Cookie: x=1"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org/\x00cb"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org/c b"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org/\u202ebc"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org/caf\u00e9"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org\\@evil.example.org/cb"], "invalid_redirect_uri"),
    ("redirect_uris", ["https://app.example.org@evil.example.org/cb"], "invalid_redirect_uri"),
    ("redirect_uris", ["http://127.0.0.1:4242/\x7f"], "invalid_redirect_uri"),
    ("client_name", "Grid tool\x1b[2J", "invalid_client_metadata"),
    ("client_name", "Grid tool\n\nApprove", "invalid_client_metadata"),
    ("client_name", "Grid \u202eloot\u202c tool", "invalid_client_metadata"),
    ("client_name", "Grid\u200btool", "invalid_client_metadata"),
    ("client_name", "Grid\u2028tool", "invalid_client_metadata"),
    ("software_id", "id\x00", "invalid_client_metadata"),
    ("software_version", "1.0\u2066", "invalid_client_metadata"),
    ("contacts", ["ops@example.org\r\nBcc: all@example.org"], "invalid_client_metadata"),
    ("client_uri", "https://app.example.org/\tabout", "invalid_client_metadata"),
    ("logo_uri", "https://app.example.org/logo\u202e.png", "invalid_client_metadata"),
    ("client_uri", 5, "invalid_client_metadata"),
    ("contacts", [5], "invalid_client_metadata"),
])
def test_non_printable_characters_are_refused(client, field, value, error):
    """docs/registration.md: no control, format (bidi override, zero-width) or separator character
    in text, only RFC 3986 §2 characters in URIs — so the stored value is exactly the one shown
    and used (a tab in a redirect URI is dropped by URL parsers, RFC 7591 §3.2.2)."""
    body = {**CLI_CLIENT, field: value}
    response = register(client, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == error
    assert field.rstrip("s") in response.get_json()["error_description"]


def test_international_names_are_kept(client):
    """Printable non-ASCII text is fine in names (RFC 7591 §2.2 allows any language)."""
    name = "Détecteur ATLAS – analyse ✓"
    body = register(client, {**CLI_CLIENT, "client_name": name}).get_json()
    assert body["client_name"] == name
    assert runtime().clients.get(body["client_id"]).client_name == name


@pytest.mark.parametrize("body,error", [
    ({"redirect_uris": ["http://evil.example.org/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://ok.example.org/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://not-a-list.example.org"}, "invalid_redirect_uri"),
    ({"grant_types": ["authorization_code"]}, "invalid_redirect_uri"),
    ({}, "invalid_redirect_uri"),  # the default grant is authorization_code (RFC 7591 §2)
    ({"grant_types": ["password"]}, "invalid_client_metadata"),
    ({"grant_types": "refresh_token"}, "invalid_client_metadata"),
    ({"response_types": ["token"], "redirect_uris": ["https://a.example.org/cb"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"scope": "storage.read:/data/../etc", "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
    ({"scope": 42, "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
    ({"client_name": "x" * 5000, "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
    ({"token_profile": "jwt", "grant_types": ["refresh_token"]}, "invalid_client_metadata"),
])
def test_invalid_metadata_is_refused(client, body, error):
    """RFC 7591 §3.2.2: invalid metadata answers 400 with the matching error code."""
    response = register(client, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("data,content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b"\"string\"", "application/json"),
    (b"client_name=x", "application/x-www-form-urlencoded"),
    (b'{"client_name": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
])
def test_malformed_body(client, data, content_type):
    response = client.post(REG, data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_request", "invalid_client_metadata")


def test_huge_body_is_refused(client):
    response = client.post(REG, json={"client_name": "x" * 200_000})
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"


def test_static_clients_are_operator_clients(tmp_path):
    from .conftest import make_app
    app = make_app(tmp_path, STATIC_CLIENTS='[{"client_id": "storage-svc", "client_secret": "s3cr3t-'
                   'long-enough-value", "grant_types": ["client_credentials"], "scope": "storage.read:/"}]')
    with app.app_context():
        test = app.test_client()
        response = test.post("/auth/token", data={"grant_type": "client_credentials"},
                             headers=basic_auth("storage-svc", "s3cr3t-long-enough-value"))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["scope"] == "storage.read:/"
