"""RFC 7592 client configuration: read, update and delete with the registration access token
(or the administrator's token), its RFC 6750 errors, and the update rules of docs/registration.md:
an update never gives a client more than the same caller could have registered."""

from __future__ import annotations

import json

import pytest

from scitoken_issuer.extensions import db, runtime

from .conftest import ADMIN_TOKEN, basic_auth

REG = "/auth/client/registration"
CLI_CLIENT = {"client_name": "oidc-agent", "redirect_uris": ["http://127.0.0.1:4242/"],
              "grant_types": ["authorization_code", "refresh_token",
                              "urn:ietf:params:oauth:grant-type:device_code"],
              "scope": "openid offline_access storage.read:/data"}
STATIC = [{"client_id": "static-svc", "client_secret": "static-secret-0123456789abcdef0123456789",
           "grant_types": ["client_credentials"], "scope": "storage.read:/data"}]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def register(client, body=CLI_CLIENT, token=None) -> dict:
    response = client.post(REG, json=body, headers=bearer(token) if token else {})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def uri_of(body: dict) -> str:
    """The client configuration endpoint (RFC 7592 §1.2), from the client_id so that the same
    test runs against a server that does not print ``registration_client_uri``."""
    return f"{REG}/{body['client_id']}"


def put(client, registered: dict, token: str | None = None, **changes):
    """RFC 7592 §2.2: the whole metadata again, with ``changes`` (a None value drops the field)."""
    metadata = {k: v for k, v in registered.items() if k in (*CLI_CLIENT, "token_endpoint_auth_method")}
    metadata.update(changes)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    return client.put(uri_of(registered), headers=bearer(token or registered["registration_access_token"]),
                      json={**metadata, "client_id": registered["client_id"]})


def cli_add(app, *args: str) -> dict:
    """``scitoken-issuer client add`` as the administrator runs it; its printed JSON."""
    result = app.test_cli_runner().invoke(args=["client", "add", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def client_credentials(client, created: dict, **form):
    return client.post("/auth/token", data={"grant_type": "client_credentials", **form},
                       headers=basic_auth(created["client_id"], created["client_secret"]))


# -- the RFC 7592 operations ------------------------------------------------------------------

def test_read_update_delete_with_registration_token(client):
    """RFC 7592 §2.1–2.3 with the token from the registration response."""
    body = register(client)
    read = client.get(uri_of(body), headers=bearer(body["registration_access_token"]))
    assert read.status_code == 200 and read.get_json()["client_name"] == "oidc-agent"
    assert "client_secret" not in read.get_json()  # stored only as a hash

    update = put(client, body, client_name="renamed")
    assert update.status_code == 200, update.get_json()
    assert update.get_json()["client_name"] == "renamed"

    assert client.delete(uri_of(body), headers=bearer(body["registration_access_token"])).status_code == 204
    assert runtime().clients.get(body["client_id"]) is None


def test_read_and_update_answer_the_registered_metadata(client):
    """RFC 7592 §3: GET and PUT answer with the client information response — the metadata as
    registered (normalised), the identifiers and the management URI and token — and a later
    GET returns exactly what the PUT answered."""
    body = register(client)
    token = body["registration_access_token"]
    update = put(client, body, scope="openid storage.read:/data/a openid",
                 redirect_uris=["http://127.0.0.1:4242/", "http://127.0.0.1:4242/"])
    assert update.status_code == 200, update.get_json()
    updated = update.get_json()
    assert updated["scope"] == "openid storage.read:/data/a"
    assert updated["redirect_uris"] == ["http://127.0.0.1:4242/"]
    assert updated["response_types"] == ["code"]
    assert updated["registration_access_token"] == token
    assert updated["registration_client_uri"] == body["registration_client_uri"]
    assert updated["client_id_issued_at"] == body["client_id_issued_at"]
    assert client.get(uri_of(body), headers=bearer(token)).get_json() == updated


@pytest.mark.parametrize("field,value", [
    ("registration_access_token", "x"), ("registration_client_uri", "https://x.example.org"),
    ("client_secret_expires_at", 1), ("client_id_issued_at", 1), ("client_id", "someone-else"),
    ("client_secret", "not-the-secret")])
def test_update_refuses_server_fields(client, field, value):
    """RFC 7592 §2.2: the request must not carry the server's fields, must carry the client's own
    ``client_id``, and a ``client_secret`` must be the current one (a client cannot choose it)."""
    body = register(client)
    response = put(client, body, **{field: value}) if field != "client_id" else client.put(
        uri_of(body), headers=bearer(body["registration_access_token"]), json={**CLI_CLIENT, field: value})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request" and field in response.get_json()["error_description"]


@pytest.mark.parametrize("data", [b"[1]", b"{oops", b"\"x\""])
def test_update_body_must_be_a_json_object(client, data):
    """RFC 7592 §2.2: the update is a JSON object; anything else is 400, never a 500."""
    body = register(client)
    response = client.put(uri_of(body), data=data, content_type="application/json",
                          headers=bearer(body["registration_access_token"]))
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_client_metadata", "invalid_request")


# -- errors: RFC 7592 §2.1-2.3 and RFC 6750 §3.1 ------------------------------------------------

METHODS = ["GET", "PUT", "DELETE"]


def call(client, method: str, uri: str, headers: dict, client_id: str | None = None):
    json_body = {**CLI_CLIENT, "client_id": client_id or uri.rsplit("/", 1)[-1]} if method == "PUT" else None
    return client.open(uri, method=method, headers=headers, json=json_body)


def assert_invalid_token(response):
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"] == "invalid_token"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", METHODS)
def test_missing_token(client, method):
    """RFC 7592 §2 (requests carry the registration access token) and RFC 6750 §3.1: a request
    with no token is 401 with a Bearer challenge that has no error attribute."""
    body = register(client)
    for headers in ({}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer "}):
        response = call(client, method, uri_of(body), headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="http://issuer.test"'
    assert runtime().clients.get(body["client_id"]) is not None


@pytest.mark.parametrize("method", METHODS)
def test_invalid_token(client, method):
    """RFC 7592 §2.1/§2.2/§2.3: a registration access token that is not valid is answered as
    RFC 6750 §3.1 says — 401 ``invalid_token`` with ``WWW-Authenticate: Bearer error=...``."""
    body = register(client)
    assert_invalid_token(call(client, method, uri_of(body), bearer("forged-" + body["registration_access_token"])))
    assert runtime().clients.get(body["client_id"]).client_name == "oidc-agent"


@pytest.mark.parametrize("method", METHODS)
def test_stale_token_of_a_deleted_client(client, method):
    """RFC 7592 §2.3: a deleted client's registration access token is invalid afterwards (401)."""
    body = register(client)
    assert client.delete(uri_of(body), headers=bearer(body["registration_access_token"])).status_code == 204
    assert_invalid_token(call(client, method, uri_of(body), bearer(body["registration_access_token"])))


@pytest.mark.parametrize("method", METHODS)
def test_token_of_another_client(client, method):
    """RFC 7592 §2.3 ("not valid for this client" is an RFC 6750 error): another client's valid
    token is 401 ``invalid_token`` at this client's URI; nothing changes and that other token
    keeps working for its own client."""
    first, second = register(client), register(client)
    response = call(client, method, uri_of(second), bearer(first["registration_access_token"]))
    assert_invalid_token(response)
    assert runtime().clients.get(second["client_id"]).client_name == "oidc-agent"
    assert client.get(uri_of(first), headers=bearer(first["registration_access_token"])).status_code == 200


@pytest.mark.parametrize("method", METHODS)
def test_unknown_client_revokes_the_token(client, method):
    """RFC 7592 §2.1–2.3: for a client that does not exist the answer is 401, and the registration
    access token used is revoked at once (its own client stays, without a usable token)."""
    body = register(client)
    token = body["registration_access_token"]
    response = call(client, method, f"{REG}/no-such-client", bearer(token))
    assert_invalid_token(response)
    assert_invalid_token(client.get(uri_of(body), headers=bearer(token)))
    assert runtime().clients.get(body["client_id"]) is not None


def test_administrator_issues_a_new_registration_token(app, client):
    """docs/registration.md: after a revocation (or a leak) ``client registration-token`` gives the
    client a new registration access token; the old one is 401 from then on."""
    body = register(client)
    assert client.get(f"{REG}/no-such-client", headers=bearer(body["registration_access_token"])).status_code == 401
    result = app.test_cli_runner().invoke(args=["client", "registration-token", body["client_id"]])
    assert result.exit_code == 0, result.output
    fresh = json.loads(result.output)
    assert fresh["registration_client_uri"] == body["registration_client_uri"]
    assert client.get(uri_of(body), headers=bearer(fresh["registration_access_token"])).status_code == 200
    assert_invalid_token(client.get(uri_of(body), headers=bearer(body["registration_access_token"])))


@pytest.mark.parametrize("app_config", [{"STATIC_CLIENTS": json.dumps(STATIC)}])
def test_static_client_is_read_only_over_http(client, app_config):
    """RFC 7592 §2.2/§2.3: a client not allowed to update or delete its record gets 403; the
    operator's STATIC_CLIENTS change only in the configuration. The administrator may read it."""
    uri = f"{REG}/static-svc"
    read = client.get(uri, headers=bearer(ADMIN_TOKEN))
    assert read.status_code == 200 and read.get_json()["grant_types"] == ["client_credentials"]
    assert "registration_access_token" not in read.get_json()
    for method in ("PUT", "DELETE"):
        response = call(client, method, uri, bearer(ADMIN_TOKEN))
        assert response.status_code == 403
        assert response.get_json()["error"] == "unauthorized_client"
        assert "STATIC_CLIENTS" in response.get_json()["error_description"]
    assert runtime().clients.get("static-svc").scope == "storage.read:/data"


# -- update rules: docs/registration.md "Updates" ------------------------------------------------

def test_registration_token_cannot_widen_an_administrators_client(app, client):
    """Issue 7 item 2, end to end: an administrator's client_credentials client (``client add``)
    PUTs ``scope: storage.modify:/`` with the registration access token the CLI printed. The
    update is refused by name (RFC 7591 §3.2.2 ``invalid_client_metadata``), and the next
    client-credentials token carries only the administrator's scope."""
    created = cli_add(app, "--name", "svc", "--grant", "client_credentials", "--scope", "storage.read:/data")
    response = client.put(uri_of(created), headers=bearer(created["registration_access_token"]),
                          json={"client_id": created["client_id"], "grant_types": ["client_credentials"],
                                "scope": "storage.modify:/"})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_client_metadata"
    assert "scope" in response.get_json()["error_description"]

    token = client_credentials(client, created)
    assert token.status_code == 200 and token.get_json()["scope"] == "storage.read:/data"
    assert client_credentials(client, created, scope="storage.modify:/").get_json()["error"] == "invalid_scope"


@pytest.mark.parametrize("change", [
    {"scope": "storage.read:/data storage.create:/data"},
    {"scope": "storage.read:/data/narrower"},
    {"grant_types": ["client_credentials", "refresh_token"]},
    {"grant_types": ["authorization_code"], "redirect_uris": ["https://a.example.org/cb"]},
])
def test_privileged_clients_policy_is_the_administrators(app, client, change):
    """docs/registration.md: scope and grant changes of a client holding a privileged grant are
    the administrator's alone — wider, narrower or different, the token holder gets 400 naming
    the field, and the stored policy is unchanged."""
    created = cli_add(app, "--grant", "client_credentials", "--scope", "storage.read:/data")
    response = client.put(uri_of(created), headers=bearer(created["registration_access_token"]),
                          json={"client_id": created["client_id"], "grant_types": ["client_credentials"],
                                "scope": "storage.read:/data", **change})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_client_metadata"
    assert next(iter(change)) in response.get_json()["error_description"]
    stored = runtime().clients.get(created["client_id"])
    assert stored.scope == "storage.read:/data" and stored.grant_types == ["client_credentials"]


def test_administrators_client_keeps_its_other_metadata_editable(app, client):
    """docs/registration.md: the CLI's registration access token stays useful — the client may
    rename itself, and an omitted scope or grant_types keeps the administrator's value (RFC 7592
    §2.2 lets the server ignore an omitted field)."""
    created = cli_add(app, "--grant", "client_credentials", "--scope", "storage.read:/data")
    response = client.put(uri_of(created), headers=bearer(created["registration_access_token"]),
                          json={"client_id": created["client_id"], "client_name": "renamed service"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["client_name"] == "renamed service"
    assert body["scope"] == "storage.read:/data" and body["grant_types"] == ["client_credentials"]
    assert client_credentials(client, created).get_json()["scope"] == "storage.read:/data"


def test_dynamic_client_cannot_take_privileged_grants_by_update(client):
    """docs/registration.md: a dynamic client's update is a fresh anonymous registration, so it
    cannot add client_credentials (or any grant only an administrator gives)."""
    body = register(client)
    response = put(client, body, grant_types=["client_credentials"])
    assert response.status_code == 400 and "administrator" in response.get_json()["error_description"]
    assert runtime().clients.get(body["client_id"]).grant_types == CLI_CLIENT["grant_types"]


def test_dynamic_client_may_change_what_anonymous_registration_allows(client):
    """docs/registration.md: within what an anonymous registration may hold, a dynamic client
    changes its scope and grants freely (RFC 7592 §2.2 replaces, not augments)."""
    body = register(client)
    response = put(client, body, scope="openid storage.read:/data/other", grant_types=["authorization_code"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "openid storage.read:/data/other"
    assert response.get_json()["grant_types"] == ["authorization_code"]


@pytest.mark.parametrize("changes", [
    {"scope": "openid storage.read:/ storage.modify:/data"},
    {"scope": "compute.create compute.modify"},
    {"scope": "condor:/ADMINISTRATOR condor:/WRITE"},
    {"scope": "execute:/bin queue:/"},
    {"scope": "read:/data write:/data"},
    {"scope": "wlcg.groups openid offline_access"},
    {"grant_types": ["client_credentials"], "redirect_uris": None},
    {"grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"], "redirect_uris": None},
    {"grant_types": ["authorization_code"], "token_endpoint_auth_method": "none"},
])
def test_dynamic_update_accepts_exactly_what_anonymous_registration_accepts(client, changes):
    """docs/registration.md: a dynamic client's update is checked as a fresh anonymous
    registration — whatever that refuses (privileged grants, administrator-only scopes of
    docs/scopes.md) the update refuses with the same error, and what it accepts the update stores."""
    metadata = {**CLI_CLIENT, **changes}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    fresh = client.post(REG, json=metadata)
    update = put(client, register(client), **changes)
    assert update.status_code == (200 if fresh.status_code == 201 else fresh.status_code), update.get_json()
    if fresh.status_code == 201:
        assert update.get_json()["scope"] == fresh.get_json()["scope"]
        assert update.get_json()["grant_types"] == fresh.get_json()["grant_types"]
    else:
        assert update.get_json()["error"] == fresh.get_json()["error"]


def test_admin_granted_privilege_is_not_kept_by_the_token_holder(client):
    """Before: a client holding a privileged grant passed an update that kept it, whatever else it
    asked. Now a dynamic client that the administrator gave client_credentials (RFC 7592 with
    ADMIN_TOKEN) is the administrator's: its token holder cannot touch its scope."""
    body = register(client)
    admin_put = put(client, body, token=ADMIN_TOKEN, grant_types=["client_credentials"],
                    scope="storage.read:/data", redirect_uris=None)
    assert admin_put.status_code == 200, admin_put.get_json()
    assert "registration_access_token" not in admin_put.get_json()  # the admin token is never echoed
    assert runtime().clients.get(body["client_id"]).source == "admin"
    widened = client.put(uri_of(body), headers=bearer(body["registration_access_token"]),
                         json={"client_id": body["client_id"], "grant_types": ["client_credentials"],
                               "scope": "storage.modify:/"})
    assert widened.status_code == 400 and "scope" in widened.get_json()["error_description"]
    assert runtime().clients.get(body["client_id"]).scope == "storage.read:/data"


def test_admin_token_may_update_anything(app, client):
    """docs/registration.md: RFC 7592 with ADMIN_TOKEN is supported; the administrator may widen an
    administrator's client, and the client's own token keeps working afterwards."""
    created = cli_add(app, "--grant", "client_credentials", "--scope", "storage.read:/data")
    response = client.put(uri_of(created), headers=bearer(ADMIN_TOKEN),
                          json={"client_id": created["client_id"], "grant_types": ["client_credentials"],
                                "scope": "storage.read:/data storage.create:/data/out"})
    assert response.status_code == 200, response.get_json()
    assert client_credentials(client, created).get_json()["scope"] == "storage.read:/data storage.create:/data/out"
    assert client.get(uri_of(created), headers=bearer(created["registration_access_token"])).status_code == 200


@pytest.mark.parametrize("app_config", [{"REGISTRATION": "admin"}, {"REGISTRATION": "closed"}])
def test_policy_is_locked_while_registration_is_not_open(app, client, app_config):
    """docs/registration.md: when anonymous callers may not register at all, a token holder may
    not change any client's scope or grants (it could have registered nothing); its other
    metadata stays editable."""
    created = cli_add(app, "--grant", "authorization_code", "--redirect-uri", "https://a.example.org/cb",
                      "--scope", "openid storage.read:/data")
    runtime().clients.get(created["client_id"]).source = "dynamic"  # as if registered while open
    db.session.commit()
    widened = client.put(uri_of(created), headers=bearer(created["registration_access_token"]),
                         json={"client_id": created["client_id"], "redirect_uris": ["https://a.example.org/cb"],
                               "scope": "openid storage.read:/"})
    assert widened.status_code == 400 and "scope" in widened.get_json()["error_description"]
    renamed = client.put(uri_of(created), headers=bearer(created["registration_access_token"]),
                         json={"client_id": created["client_id"], "redirect_uris": ["https://b.example.org/cb"],
                               "client_name": "moved"})
    assert renamed.status_code == 200, renamed.get_json()
    assert renamed.get_json()["scope"] == "openid storage.read:/data"

