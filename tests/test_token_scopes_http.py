"""docs/flows.md (flows 1 and 3) and docs/authorization.md through HTTP: the authorization code
flow (RFC 6749 §4.1, PKCE RFC 7636) with the development login against a real directory tree,
and the refresh re-check (RFC 6749 §6).

Needs root for chown (CI runs as root).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.policy import Refusal
from tests.conftest import make_app
from tests.support.processes import wait_until
from tests.test_policy import build_tree, write_users

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

REDIRECT_URI = "http://127.0.0.1:8765/callback"
CLIENT_SCOPE = "openid offline_access wlcg.groups storage.read:/data storage.create:/data storage.modify:/data"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(tmp_path):
    """The issuer over a real tree, with development users; no app context is held across
    requests (a shared context would share ``g`` and with it Flask-WTF's cached CSRF token)."""
    app = make_app(tmp_path, POSIX_PATH=build_tree(tmp_path), DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def oauth_client(app):
    """A public client (PKCE) allowed the storage scopes under /data and refresh tokens."""
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "analysis portal", "grant_types": ["authorization_code", "refresh_token"],
             "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "scope": CLIENT_SCOPE},
            admin=True, source="admin")
        db.session.commit()
        return SimpleNamespace(client_id=registration.client.client_id, scope=CLIENT_SCOPE)


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in(client, username: str = "alice", password: str = "pw") -> None:
    """The development login (docs/flows.md), with the CSRF token from its form."""
    form = client.get("/auth/login?next=/auth/device")
    assert form.status_code == 200
    response = client.post("/auth/login", data={"username": username, "password": password, "next": "/auth/device",
                                                "csrf_token": csrf_token(form.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)


def authorize_url(oauth_client, scope: str, challenge: str, state: str = "st-1") -> str:
    return "/auth/authorize?" + urlencode({
        "response_type": "code", "client_id": oauth_client.client_id, "redirect_uri": REDIRECT_URI,
        "scope": scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256"})


def approve(client, url: str):
    """Show the consent page, then approve it; returns (consent page HTML, the approval response)."""
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    return html, client.post(url, data={"decision": "approve", "csrf_token": csrf_token(html)})


def callback_params(response) -> dict[str, str]:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def verify(client, token: str) -> dict:
    """Verify the JWT with the issuer's published keys (RFC 7517) as a storage service would."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwt.PyJWKSet.from_dict(client.get("/auth/certs").get_json()).keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["RS256", "ES256"], options={"verify_aud": False})


def login_and_get_tokens(client, oauth_client, scope: str) -> dict:
    sign_in(client)
    verifier, challenge = pkce()
    _, response = approve(client, authorize_url(oauth_client, scope, challenge))
    params = callback_params(response)
    assert params["state"] == "st-1" and "code" in params, params
    token = client.post("/auth/token", data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
        "client_id": oauth_client.client_id, "code_verifier": verifier})
    assert token.status_code == 200, token.get_data(as_text=True)
    return token.get_json()


def test_granted_scope_is_in_the_jwt(client, oauth_client):
    """docs/tokens.md: a scope the filesystem allows appears in the token's ``scope`` claim."""
    body = login_and_get_tokens(client, oauth_client, "openid offline_access wlcg.groups "
                                "storage.read:/data/ana/out storage.create:/data/ana/out")
    claims = verify(client, body["access_token"])
    assert claims["sub"] == "alice" and claims["client_id"] == oauth_client.client_id
    assert {"storage.read:/data/ana/out", "storage.create:/data/ana/out"} <= set(claims["scope"].split())
    assert claims["scope"] == body["scope"]
    assert claims["wlcg.groups"] == ["/alice", "/ana", "/atlas"]
    assert body["refresh_token"]


def test_refused_scope_redirects_invalid_scope_naming_it(client, oauth_client):
    """RFC 6749 §4.1.2.1 ``invalid_scope`` back to the client, naming the first refused scope;
    the consent page already shows the refusal and offers no approve button."""
    sign_in(client)
    _, challenge = pkce()
    html, response = approve(client, authorize_url(
        oauth_client, "openid storage.read:/data/ana/out storage.create:/data/ana", challenge))
    assert "This request cannot be granted: storage.create:/data/ana refused: no write permission on " \
           "/data/ana for user alice" in html
    assert 'id="approve"' not in html
    params = callback_params(response)
    assert params["error"] == "invalid_scope"
    assert params["state"] == "st-1"
    assert params["error_description"].startswith("storage.create:/data/ana refused: no write permission")
    assert "code" not in params


def test_strict_mode_refusal_over_http(client, oauth_client):
    """docs/authorization.md, rule 4: /data/ana is readable but a directory below denies alice."""
    sign_in(client)
    _, challenge = pkce()
    _, response = approve(client, authorize_url(oauth_client, "storage.read:/data/ana", challenge))
    params = callback_params(response)
    assert params["error"] == "invalid_scope"
    assert "strict mode" in params["error_description"] and "/data/ana/private" in params["error_description"]


def test_scope_outside_client_policy(client, oauth_client):
    """docs/authorization.md: scopes outside the client's registered policy are refused whatever POSIX says."""
    sign_in(client)
    _, challenge = pkce()
    _, response = approve(client, authorize_url(oauth_client, "storage.stage:/data/ana/out", challenge))
    params = callback_params(response)
    assert params["error"] == "invalid_scope"
    assert "storage.stage:/data/ana/out is not allowed for client" in params["error_description"]


def test_login_form_requires_csrf(client):
    """docs/security-web.md: browser forms carry CSRF protection."""
    response = client.post("/auth/login", data={"username": "alice", "password": "pw", "next": "/auth/device"})
    assert response.status_code == 400


def test_refresh_rechecks_the_filesystem(app, client, oauth_client):
    """docs/flows.md, flow 3: every refresh re-decides the scopes; after a chmod the refresh is ``invalid_scope``."""
    body = login_and_get_tokens(client, oauth_client, "offline_access storage.create:/data/ana/out")
    refreshed = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": oauth_client.client_id,
                                                 "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert "storage.create:/data/ana/out" in verify(client, refreshed.get_json()["access_token"])["scope"].split()

    with app.app_context():
        rt = runtime()
        os.chmod(os.path.join(rt.settings.posix_path, "data/ana/out"), 0o755)
        alice = rt.groups.get("alice")
        # the policy's stat cache keeps an answer for at most a second: wait until it sees the chmod
        wait_until(lambda: isinstance(rt.policy.grant_scopes(alice, "storage.create:/data/ana/out",
                                                             oauth_client), Refusal),
                   timeout=10, what="the chmod to be seen")
    refused = client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": oauth_client.client_id,
                                               "refresh_token": refreshed.get_json()["refresh_token"]})
    assert refused.status_code == 400
    error = refused.get_json()
    assert error["error"] == "invalid_scope"
    assert error["error_description"].startswith("storage.create:/data/ana/out refused: no write permission")
    assert "access_token" not in error
    assert refused.headers["Cache-Control"] == "no-store"
