"""Registration as an operator and an attacker meet it: the issuer under gunicorn on PostgreSQL and
Redis, the administrator's ``scitoken-issuer client add`` in its own process, and RFC 7591/7592
requests over real HTTP (docs/registration.md)."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest
import requests

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(issuer_stack):
    return issuer_stack(worker=False)


def test_registration_token_cannot_widen_an_administrators_client(stack):
    """Issue 7 item 2 over the wire: with the registration access token that ``client add`` printed
    for a client_credentials client, a PUT of ``scope: storage.modify:/`` (RFC 7592 §2.2) is 400
    ``invalid_client_metadata`` naming ``scope``, and the next client-credentials token
    (RFC 6749 §4.4) still carries only the administrator's scope."""
    done = stack.cli("client", "add", "--name", "transfer service", "--grant", "client_credentials",
                     "--scope", "storage.read:/data")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    uri = f"{stack.url}/auth/client/registration/{created['client_id']}"
    auth = {"Authorization": f"Bearer {created['registration_access_token']}"}

    widened = requests.put(uri, headers=auth, timeout=30, json={
        "client_id": created["client_id"], "grant_types": ["client_credentials"], "scope": "storage.modify:/"})
    assert widened.status_code == 400, widened.text
    assert widened.json()["error"] == "invalid_client_metadata" and "scope" in widened.json()["error_description"]

    read = requests.get(uri, headers=auth, timeout=30)
    assert read.status_code == 200 and read.json()["scope"] == "storage.read:/data"

    token = stack.token({"grant_type": "client_credentials"}, created["client_id"], created["client_secret"])
    assert token.status_code == 200, token.text
    claims = pyjwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "storage.read:/data"
    asked = stack.token({"grant_type": "client_credentials", "scope": "storage.modify:/"},
                        created["client_id"], created["client_secret"])
    assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"
    assert created["registration_client_uri"] == uri  # the CLI prints where to manage the client


def test_registration_round_trip_over_http(stack):
    """RFC 7591 §3.2.1 and RFC 7592 §2-3 through gunicorn: the 201 body is the metadata as
    registered and a GET returns the same; a foreign or stale token is 401 with a Bearer challenge
    (RFC 6750 §3.1); DELETE is 204 and the client is gone for the token endpoint too."""
    asked = {"client_name": "notebook", "redirect_uris": ["http://127.0.0.1:8765/cb"] * 2,
             "grant_types": ["authorization_code", "refresh_token", "refresh_token"], "scope": "openid openid"}
    first = requests.post(f"{stack.url}/auth/client/registration", json=asked, timeout=30)
    second = requests.post(f"{stack.url}/auth/client/registration", json=asked, timeout=30)
    assert first.status_code == second.status_code == 201, first.text
    body = first.json()
    assert body["redirect_uris"] == ["http://127.0.0.1:8765/cb"] and body["scope"] == "openid"
    assert body["grant_types"] == ["authorization_code", "refresh_token"] and body["response_types"] == ["code"]
    auth = {"Authorization": f"Bearer {body['registration_access_token']}"}
    read = requests.get(body["registration_client_uri"], headers=auth, timeout=30)
    assert read.json() == {k: v for k, v in body.items() if k != "client_secret"}

    foreign = requests.get(second.json()["registration_client_uri"], headers=auth, timeout=30)
    assert foreign.status_code == 401 and 'error="invalid_token"' in foreign.headers["WWW-Authenticate"]

    deleted = requests.delete(body["registration_client_uri"], headers=auth, timeout=30)
    assert deleted.status_code == 204 and deleted.content == b"" and "Content-Type" not in deleted.headers
    stale = requests.get(body["registration_client_uri"], headers=auth, timeout=30)
    assert stale.status_code == 401 and stale.json()["error"] == "invalid_token"
    gone = stack.token({"grant_type": "refresh_token", "refresh_token": "x"}, body["client_id"], body["client_secret"])
    assert gone.status_code == 401 and gone.json()["error"] == "invalid_client"
