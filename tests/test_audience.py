"""The ``aud`` claim (docs/tokens.md, "Audience"): a default per token profile when the site sets
no ``AUDIENCE``, narrowed by the ``audience`` parameter in every grant, and kept by a refresh
family."""

from __future__ import annotations

import pytest

from scitoken_issuer.extensions import db, runtime
from tests.conftest import basic_auth, make_app
from tests.support.user_flows import (DEVICE_GRANT, REDIRECT_URI, code_tokens, device_start, device_tokens,
                                      refresh, sign_in, verify)

WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
SCITOKENS_ANY = "ANY"
SITE = "https://se.example.org"
USER_SCOPE = "openid offline_access"


@pytest.fixture
def app_config():
    return {}


@pytest.fixture
def app(tmp_path, app_config):
    """No app context held across requests (Flask-WTF caches the CSRF token on ``g``)."""
    app = make_app(tmp_path, **app_config)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def register(app, profile: str = "wlcg", **metadata) -> str:
    """A public client for the device and code flows with refresh tokens, in ``profile``."""
    metadata = {"client_name": "analysis tool", "token_endpoint_auth_method": "none", "scope": USER_SCOPE,
                "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT],
                "redirect_uris": [REDIRECT_URI], "token_profile": profile, **metadata}
    with app.app_context():
        registration = runtime().clients.register(metadata, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id


def credentials_client(app, profile: str):
    with app.app_context():
        registration = runtime().clients.register(
            {"grant_types": ["client_credentials"], "scope": "storage.read:/data", "token_profile": profile},
            admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


@pytest.mark.parametrize("profile,default", [("wlcg", WLCG_ANY), ("scitokens", SCITOKENS_ANY)])
def test_default_audience_per_profile(app, client, profile, default):
    """docs/tokens.md "Audience": with ``AUDIENCE`` unset, each profile gets the "any" value its
    verifiers accept (scitokens-cpp accepts the WLCG URI only in WLCG tokens, ``ANY`` only in
    SciTokens 2.0 tokens) — for client credentials, the device flow and the code flow alike."""
    client_id, secret = credentials_client(app, profile)
    body = client.post("/auth/token", data={"grant_type": "client_credentials"},
                       headers=basic_auth(client_id, secret)).get_json()
    assert verify(client, body["access_token"], default)["aud"] == default
    user_client = register(app, profile)
    sign_in(client)
    device = device_tokens(client, user_client, USER_SCOPE)
    assert verify(client, device["access_token"], default)["aud"] == default
    code = code_tokens(client, user_client, USER_SCOPE)
    assert verify(client, code["access_token"], default)["aud"] == default
    refreshed = refresh(client, user_client, code["refresh_token"]).get_json()
    assert verify(client, refreshed["access_token"], default)["aud"] == default


@pytest.mark.parametrize("app_config", [{"AUDIENCE": SITE}])
@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_site_audience_applies_to_both_profiles(app, client, app_config, profile):
    """docs/tokens.md "Audience": a site's ``AUDIENCE`` is every token's ``aud`` whatever the profile."""
    client_id, secret = credentials_client(app, profile)
    body = client.post("/auth/token", data={"grant_type": "client_credentials"},
                       headers=basic_auth(client_id, secret)).get_json()
    assert verify(client, body["access_token"], SITE)["aud"] == SITE


def test_device_grant_honours_audience(app, client):
    """docs/tokens.md "Audience": ``audience`` given at ``/auth/device/code`` (RFC 8628 §3.1 with
    the WLCG ``audience`` parameter) is the ``aud`` of the tokens the device receives, and of
    every refresh of them."""
    client_id = register(app)
    sign_in(client)
    body = device_tokens(client, client_id, USER_SCOPE, audience=SITE)
    assert verify(client, body["access_token"], SITE)["aud"] == SITE
    refreshed = refresh(client, client_id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert verify(client, refreshed.get_json()["access_token"], SITE)["aud"] == SITE


@pytest.mark.parametrize("audience", ["é", "a" * 300, " ".join(f"https://s{i}.example.org" for i in range(6))])
def test_device_authorization_refuses_bad_audience(app, client, audience):
    """RFC 8628 §3.2 / RFC 6749 §5.2: a malformed ``audience`` is ``invalid_request``, no code issued."""
    status, body = device_start(client, register(app), USER_SCOPE, audience=audience)
    assert status == 400 and body["error"] == "invalid_request", body


@pytest.mark.parametrize("app_config", [{"AUDIENCE": SITE}])
def test_device_authorization_refuses_audience_other_than_the_site(app, client, app_config):
    """docs/tokens.md "Audience": with ``AUDIENCE`` set, only that audience may be asked."""
    status, body = device_start(client, register(app), USER_SCOPE, audience="https://elsewhere.example.org")
    assert status == 400 and body["error"] == "invalid_request"
    assert SITE in body["error_description"]


def test_refresh_keeps_a_narrowed_audience(app, client):
    """docs/tokens.md "Refresh families": the audience the code flow narrowed to is kept by every
    refresh (it used to fall back to the default); a refresh may narrow it further, never widen."""
    client_id = register(app)
    sign_in(client)
    first = code_tokens(client, client_id, USER_SCOPE, audience=f"{SITE} https://b.example.org")
    assert verify(client, first["access_token"], SITE)["aud"] == [SITE, "https://b.example.org"]
    second = refresh(client, client_id, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    assert verify(client, second.get_json()["access_token"], SITE)["aud"] == [SITE, "https://b.example.org"]

    wider = refresh(client, client_id, second.get_json()["refresh_token"], audience="https://c.example.org")
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_request"
    narrower = refresh(client, client_id, second.get_json()["refresh_token"], audience=SITE)
    assert narrower.status_code == 200, narrower.get_json()
    assert verify(client, narrower.get_json()["access_token"], SITE)["aud"] == SITE
    # the narrower answer did not shrink the family: the next refresh has both again
    third = refresh(client, client_id, narrower.get_json()["refresh_token"])
    assert verify(client, third.get_json()["access_token"], SITE)["aud"] == [SITE, "https://b.example.org"]


def test_bad_audience_at_authorize_redirects_before_consent(app, client):
    """RFC 6749 §4.1.2.1: a malformed ``audience`` is an ``invalid_request`` error redirect with
    the client's ``state``, before the user is asked anything."""
    from tests.support.user_flows import authorize_query, pkce, redirect_params

    client_id = register(app)
    _verifier, challenge = pkce()
    params = redirect_params(client.get(authorize_query(client_id, USER_SCOPE, challenge, audience="é")))
    assert params["error"] == "invalid_request" and params["state"] == "st-1"


# -- RFC 8707 resource indicators and repeated audience values --------------------------------
# ``resource`` used to be read by token exchange only: every other grant ignored it and issued a
# token for any service, wider than the client asked for.

OTHER = "https://other.example.org"


def test_resource_narrows_client_credentials(app, client):
    """RFC 8707 §2: ``resource`` at the token endpoint makes the token's ``aud``; repeated
    ``resource`` values all count (never the first only), and ``audience`` combines with them."""
    client_id, secret = credentials_client(app, "scitokens")
    body = client.post("/auth/token", data={"grant_type": "client_credentials", "resource": SITE},
                       headers=basic_auth(client_id, secret)).get_json()
    assert verify(client, body["access_token"], SITE)["aud"] == SITE
    both = client.post("/auth/token", data={"grant_type": "client_credentials", "resource": [SITE, OTHER]},
                       headers=basic_auth(client_id, secret)).get_json()
    assert verify(client, both["access_token"], SITE)["aud"] == [SITE, OTHER]
    mixed = client.post("/auth/token", data={"grant_type": "client_credentials", "audience": SITE, "resource": OTHER},
                        headers=basic_auth(client_id, secret)).get_json()
    assert verify(client, mixed["access_token"], SITE)["aud"] == [SITE, OTHER]


@pytest.mark.parametrize("resource", ["se.example.org", "/data", "https://se.example.org/#frag", "https://é.example"])
def test_malformed_resource_is_invalid_target(app, client, resource):
    """RFC 8707 §2: a ``resource`` that is not an absolute URI without a fragment is
    ``invalid_target`` (400, no-store) at the token endpoint and at the device endpoint."""
    client_id, secret = credentials_client(app, "wlcg")
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "resource": resource},
                           headers=basic_auth(client_id, secret))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_target", response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    status, body = device_start(client, register(app), USER_SCOPE, resource=resource)
    assert status == 400 and body["error"] == "invalid_target", body


@pytest.mark.parametrize("app_config", [{"AUDIENCE": SITE}])
def test_resource_other_than_the_site_audience_is_invalid_target(app, client, app_config):
    """RFC 8707 §2 with docs/tokens.md "Audience": with ``AUDIENCE`` set, a ``resource`` naming
    another service is ``invalid_target``; naming the site's audience is accepted."""
    client_id, secret = credentials_client(app, "wlcg")
    refused = client.post("/auth/token", data={"grant_type": "client_credentials", "resource": OTHER},
                          headers=basic_auth(client_id, secret))
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_target"
    accepted = client.post("/auth/token", data={"grant_type": "client_credentials", "resource": SITE},
                           headers=basic_auth(client_id, secret))
    assert verify(client, accepted.get_json()["access_token"], SITE)["aud"] == SITE


def test_resource_narrows_the_device_grant(app, client):
    """RFC 8707 §2.1 (with RFC 8628 §3.1): ``resource`` at ``/auth/device/code``, given once or
    several times, is the ``aud`` of the device's tokens and of their refreshes."""
    client_id = register(app)
    sign_in(client)
    body = device_tokens(client, client_id, USER_SCOPE, resource=SITE)
    assert verify(client, body["access_token"], SITE)["aud"] == SITE
    refreshed = refresh(client, client_id, body["refresh_token"])
    assert verify(client, refreshed.get_json()["access_token"], SITE)["aud"] == SITE
    both = device_tokens(client, client_id, USER_SCOPE, resource=[SITE, OTHER])
    assert verify(client, both["access_token"], SITE)["aud"] == [SITE, OTHER]


def test_resource_narrows_the_code_flow_and_refresh(app, client):
    """RFC 8707 §2.1–§2.2: ``resource`` at ``/auth/authorize`` is the code's audience; at the
    token endpoint a ``resource`` may narrow it for the code exchange and for a refresh, and one
    outside it is ``invalid_target``."""
    from urllib.parse import quote

    from tests.support.user_flows import approve_code, authorize_query, pkce

    client_id = register(app)
    sign_in(client)
    verifier, challenge = pkce()
    url = authorize_query(client_id, USER_SCOPE, challenge, resource=SITE) + f"&resource={quote(OTHER, safe='')}"
    params = approve_code(client, url)
    first = client.post("/auth/token", data={"grant_type": "authorization_code", "code": params["code"],
                                             "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
                                             "client_id": client_id}).get_json()
    assert verify(client, first["access_token"], SITE)["aud"] == [SITE, OTHER]
    wider = refresh(client, client_id, first["refresh_token"], resource="https://c.example.org")
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_target"
    narrower = refresh(client, client_id, first["refresh_token"], resource=OTHER)
    assert narrower.status_code == 200, narrower.get_json()
    assert verify(client, narrower.get_json()["access_token"], OTHER)["aud"] == OTHER


def test_code_exchange_may_narrow_but_not_leave_the_codes_audience(app, client):
    """RFC 8707 §2.2: a token request for a code may name a subset of the audience asked at
    ``/auth/authorize`` (the token and its refresh family get that subset), never another."""
    from tests.support.user_flows import approve_code, authorize_query, pkce

    client_id = register(app)
    sign_in(client)

    def exchange(**extra):
        verifier, challenge = pkce()
        params = approve_code(client, authorize_query(client_id, USER_SCOPE, challenge, audience=f"{SITE} {OTHER}"))
        return client.post("/auth/token", data={
            "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, "client_id": client_id, **extra})

    outside = exchange(resource="https://c.example.org")
    assert outside.status_code == 400 and outside.get_json()["error"] == "invalid_target"
    narrowed = exchange(resource=SITE)
    assert narrowed.status_code == 200, narrowed.get_json()
    assert verify(client, narrowed.get_json()["access_token"], SITE)["aud"] == SITE
    again = refresh(client, client_id, narrowed.get_json()["refresh_token"])
    assert verify(client, again.get_json()["access_token"], SITE)["aud"] == SITE


def test_malformed_resource_at_authorize_redirects_before_consent(app, client):
    """RFC 8707 §2 / RFC 6749 §4.1.2.1: a malformed ``resource`` is an ``invalid_target`` error
    redirect with the client's ``state``, before the user is asked anything."""
    from tests.support.user_flows import authorize_query, pkce, redirect_params

    client_id = register(app)
    _verifier, challenge = pkce()
    params = redirect_params(client.get(authorize_query(client_id, USER_SCOPE, challenge, resource="/relative")))
    assert params["error"] == "invalid_target" and params["state"] == "st-1"
