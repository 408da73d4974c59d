"""Malformed scopes at every endpoint that takes ``scope``: the RFC error, never a 5xx
(docs/scopes.md "Errors" and "Refused shapes"; RFC 6749 §4.1.2.1, §5.2; RFC 8628 §3.2; RFC 7591
§3.2.2; RFC 7592 §2.2)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from scitoken_issuer.extensions import db, runtime

from .conftest import basic_auth
from .test_bad_input import assert_rfc_error

REG = "/auth/client/registration"
REDIRECT = "https://app.example.org/callback"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

MALFORMED = {
    "dotdot-path": "storage.read:/data/../etc",
    "dotdot-root": "read:/..",
    "percent": "read:/%2e%2e/etc",
    "wrong-case": "Storage.Read:/x",
    "wrong-case-scitokens": "Create:/x",
    "storage-write": "storage.write:/x",
    "control": "read:/x\x01",
    "nul": "read:/x\x00",
    "tab": "openid\tread:/x",
    "newline": "openid\r\nread:/x",
    "non-ascii": "read:/d\u00e4t",
    "quote": 'read:/"x"',
    "unknown-verb": "delete:/x",
    "url-verb": "https://scitokens.org/v1/authz/read:/x",
    "bare-storage-verb": "create",
    "compute-path": "compute.read:/x",
    "too-many": " ".join(f"read:/d{i}" for i in range(101)),
    "too-long": "read:/" + "a/" * 600 + "a",
}
#: at the token and device endpoints, a plain word no policy lists is ``invalid_scope`` too
REFUSED = {**MALFORMED, "dots": ".."}


@pytest.fixture
def public_client(make_client):
    """A public client allowed every user grant, with the default (unregistered) scope policy."""
    registered, _ = make_client(grant_types=["authorization_code", "refresh_token", DEVICE_GRANT],
                                token_endpoint_auth_method="none", redirect_uris=[REDIRECT], scope=None)
    return registered


@pytest.mark.parametrize("scope", REFUSED.values(), ids=REFUSED.keys())
def test_device_authorization(client, public_client, scope):
    """RFC 8628 §3.2 with RFC 6749 §5.2: ``invalid_scope``."""
    response = client.post("/auth/device/code", data={"client_id": public_client.client_id, "scope": scope})
    assert assert_rfc_error(response, 400)["error"] == "invalid_scope"


@pytest.mark.parametrize("scope", MALFORMED.values(), ids=MALFORMED.keys())
def test_authorize_redirects_invalid_scope(client, public_client, scope):
    """RFC 6749 §4.1.2.1: the error goes back to the verified redirect URI, with the state (a
    well-formed scope outside the policy is refused on the consent page, after sign-in)."""
    query = urlencode({"response_type": "code", "client_id": public_client.client_id, "redirect_uri": REDIRECT,
                       "scope": scope, "state": "st", "code_challenge": CHALLENGE,
                       "code_challenge_method": "S256"})
    response = client.get(f"/auth/authorize?{query}")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    params = parse_qs(location.query)
    assert params["error"] == ["invalid_scope"] and params["state"] == ["st"]
    assert params["error_description"][0]


@pytest.mark.parametrize("scope", REFUSED.values(), ids=REFUSED.keys())
def test_client_credentials(client, make_client, scope):
    """RFC 6749 §5.2: ``invalid_scope``."""
    registered, secret = make_client()
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": scope},
                           headers=basic_auth(registered.client_id, secret))
    assert assert_rfc_error(response, 400)["error"] == "invalid_scope"


@pytest.mark.parametrize("scope", REFUSED.values(), ids=REFUSED.keys())
def test_refresh(client, public_client, scope):
    """RFC 6749 §6 and §5.2: a narrower ``scope`` on refresh that is malformed is ``invalid_scope``."""
    rt = runtime()
    family = rt.refresh.new_family(public_client.client_id, "alice", "openid offline_access storage.read:/data", None)
    refresh_token = rt.refresh.issue(family)
    db.session.commit()
    response = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                "client_id": public_client.client_id, "scope": scope})
    assert assert_rfc_error(response, 400)["error"] == "invalid_scope"


@pytest.mark.parametrize("grant", [{"grant_type": "authorization_code", "code": "bogus", "redirect_uri": REDIRECT,
                                    "code_verifier": "v" * 43},
                                   {"grant_type": DEVICE_GRANT, "device_code": "bogus"}], ids=["code", "device"])
@pytest.mark.parametrize("scope", REFUSED.values(), ids=REFUSED.keys())
def test_grants_that_ignore_scope(client, public_client, grant, scope):
    """RFC 6749 §4.1.3 and RFC 8628 §3.4 take no ``scope``: a malformed one changes nothing, the
    answer is still an RFC 6749 §5.2 error."""
    response = client.post("/auth/token", data={**grant, "scope": scope, "client_id": public_client.client_id})
    assert_rfc_error(response, 400)


@pytest.mark.parametrize("scope", MALFORMED.values(), ids=MALFORMED.keys())
def test_registration(client, scope):
    """RFC 7591 §3.2.2: ``invalid_client_metadata``."""
    response = client.post(REG, json={"grant_types": [DEVICE_GRANT], "token_endpoint_auth_method": "none",
                                      "scope": scope})
    body = assert_rfc_error(response, 400)
    assert body["error"] == "invalid_client_metadata" and "scope" in body["error_description"]


@pytest.mark.parametrize("scope", MALFORMED.values(), ids=MALFORMED.keys())
def test_client_update(client, scope):
    """RFC 7592 §2.2 with RFC 7591 §3.2.2: ``invalid_client_metadata``; the client is unchanged."""
    created = client.post(REG, json={"grant_types": [DEVICE_GRANT], "token_endpoint_auth_method": "none",
                                     "scope": "openid"}).get_json()
    uri = f"{REG}/{created['client_id']}"
    auth = {"Authorization": f"Bearer {created['registration_access_token']}"}
    response = client.put(uri, headers=auth, json={"client_id": created["client_id"], "grant_types": [DEVICE_GRANT],
                                                   "token_endpoint_auth_method": "none", "scope": scope})
    assert assert_rfc_error(response, 400)["error"] == "invalid_client_metadata"
    assert client.get(uri, headers=auth).get_json()["scope"] == "openid"


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000, '{"scope": ' + "[" * 5000 + "]" * 5000 + "}"],
                         ids=["array", "in-object"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_deeply_nested_registration_json(client, body, method):
    """RFC 7591 §3.2.2: JSON nested 5,000 deep is not client metadata: 400, not a RecursionError."""
    created = client.post(REG, json={"grant_types": [DEVICE_GRANT], "token_endpoint_auth_method": "none"}).get_json()
    uri = REG if method == "POST" else f"{REG}/{created['client_id']}"
    headers = {} if method == "POST" else {"Authorization": f"Bearer {created['registration_access_token']}"}
    response = client.open(uri, method=method, data=body, content_type="application/json", headers=headers)
    assert assert_rfc_error(response, 400)["error"] == "invalid_client_metadata"
