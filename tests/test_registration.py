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
    assert stored.check_client_secret(body["client_secret"])


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


def test_wrong_admin_token_is_refused(client):
    response = register(client, CLI_CLIENT, "not-the-admin-token")
    assert response.status_code in (400, 401, 403)
    assert response.get_json()["error"] == "access_denied"


@pytest.mark.parametrize("app_config", [{"REGISTRATION": "closed"}])
def test_closed_registration(client, app_config):
    assert register(client, CLI_CLIENT).get_json()["error"] == "access_denied"
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert "registration_endpoint" not in meta


@pytest.mark.parametrize("app_config", [{"REGISTRATION": "admin"}])
def test_admin_only_registration(client, app_config):
    assert register(client, CLI_CLIENT).get_json()["error"] == "access_denied"
    assert register(client, CLI_CLIENT, ADMIN_TOKEN).status_code == 201


@pytest.mark.parametrize("body,error", [
    ({"redirect_uris": ["http://evil.example.org/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://ok.example.org/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://not-a-list.example.org"}, "invalid_redirect_uri"),
    ({"grant_types": ["authorization_code"]}, "invalid_redirect_uri"),
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
])
def test_malformed_body(client, data, content_type):
    response = client.post(REG, data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_request", "invalid_client_metadata")


def test_huge_body_is_refused(client):
    response = client.post(REG, json={"client_name": "x" * 200_000})
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"


def test_read_update_delete_with_registration_token(client):
    """RFC 7592 §2.1–2.3."""
    body = register(client, CLI_CLIENT).get_json()
    uri = body["registration_client_uri"].removeprefix("http://issuer.test")
    auth = {"Authorization": f"Bearer {body['registration_access_token']}"}

    read = client.get(uri, headers=auth)
    assert read.status_code == 200 and read.get_json()["client_name"] == "oidc-agent"
    assert "client_secret" not in read.get_json()

    update = client.put(uri, headers=auth, json={**CLI_CLIENT, "client_id": body["client_id"],
                                                  "client_name": "renamed"})
    assert update.status_code == 200, update.get_json()
    assert update.get_json()["client_name"] == "renamed"

    escalate = client.put(uri, headers=auth, json={**CLI_CLIENT, "client_id": body["client_id"],
                                                    "grant_types": ["client_credentials"]})
    assert escalate.status_code == 400 and "administrator" in escalate.get_json()["error_description"]

    assert client.delete(uri, headers=auth).status_code == 204
    assert runtime().clients.get(body["client_id"]) is None
    assert client.get(uri, headers=auth).status_code in (400, 401, 403)


def test_registration_token_is_bound_to_its_client(client):
    first = register(client, CLI_CLIENT).get_json()
    second = register(client, CLI_CLIENT).get_json()
    response = client.get(f"{REG}/{second['client_id']}",
                          headers={"Authorization": f"Bearer {first['registration_access_token']}"})
    assert response.status_code in (400, 401, 403)
    assert client.get(f"{REG}/{first['client_id']}").get_json()["error"] == "access_denied"


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
