"""End to end, through real components (docs/flows.md): a real upstream OIDC provider, PostgreSQL,
Redis, slapd, gunicorn web processes and a Celery worker process.

The browser is scripted with ``requests`` here; ``test_e2e_browser.py`` drives real Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import jwt as pyjwt
import pytest
import requests

from .support.e2e import CLIENT_ID, CLIENT_REDIRECT, CLIENT_SECRET, DEVICE_GRANT, PUBLIC_CLIENT_ID, csrf_token
from .support.upstream_idp import idp_login

pytestmark = pytest.mark.e2e


@pytest.fixture
def storage_tree(tmp_path):
    """A site filesystem: /atlas is group atlas (5001) writable, /private is bob's alone."""
    root = tmp_path / "storage"
    (root / "atlas" / "run1").mkdir(parents=True)
    (root / "private").mkdir()
    os.chmod(root, 0o755)
    os.chown(root / "atlas", 0, 5001)
    os.chmod(root / "atlas", 0o2775)
    os.chown(root / "atlas" / "run1", 0, 5001)
    os.chmod(root / "atlas" / "run1", 0o2775)
    os.chown(root / "private", 10002, 10002)
    os.chmod(root / "private", 0o700)
    return root


@pytest.fixture
def stack(issuer_stack, storage_tree):
    return issuer_stack(POSIX_PATH=str(storage_tree), IDP_RECHECK_INTERVAL=0, DEVICE_CODE_LIFETIME=600)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in_through_idp(stack, http: requests.Session, url: str, login: str = "alice",
                        password: str = "alice-idp-password") -> requests.Response:
    """Open an issuer page that needs a login, sign in at the real IdP, come back (the worker
    exchanges the IdP code), and return the issuer page that asked for the login."""
    back = idp_login(http, url, login, password)
    assert back.is_redirect and back.headers["Location"].startswith(f"{stack.url}/auth/callback"), back.text[:500]
    response = http.get(back.headers["Location"], allow_redirects=False)
    assert response.status_code == 302, response.text[:1000]
    return http.get(urljoin(stack.url, response.headers["Location"]), allow_redirects=False)


def verify(stack, token: str, audience: str = "https://wlcg.cern.ch/jwt/v1/any") -> dict:
    """Verify as a storage service does: the published JWKS, with PyJWT (an independent library)."""
    client = pyjwt.PyJWKClient(f"{stack.url}/auth/certs")
    key = client.get_signing_key_from_jwt(token)
    return pyjwt.decode(token, key.key, algorithms=["RS256", "ES256"], audience=audience, issuer=stack.url)


def authorize_url(stack, scope: str, challenge: str, client_id: str = CLIENT_ID, state: str = "st-1") -> str:
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": CLIENT_REDIRECT,
                       "scope": scope, "state": state, "nonce": "n-" + state, "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    return f"{stack.url}/auth/authorize?{query}"


def code_flow(stack, scope: str, login="alice", password="alice-idp-password", client_id=CLIENT_ID,
              expect_refusal: str | None = None, state: str | None = None):
    """Sign in, consent and approve; returns the session, the PKCE verifier and the redirect's
    query. Each flow has its own state (and so its own nonce: a reused nonce is refused)."""
    http = stack.http()
    verifier, challenge = pkce()
    state = state or secrets.token_urlsafe(8)
    consent = sign_in_through_idp(stack, http, authorize_url(stack, scope, challenge, client_id, state),
                                  login, password)
    assert ('id="refusal"' in consent.text) == bool(expect_refusal)
    if expect_refusal:
        assert expect_refusal in consent.text
    assert consent.status_code == 200 and 'name="decision" value="approve"' in consent.text, consent.text[:1000]
    back = http.post(consent.url, data={"decision": "approve", "csrf_token": csrf_token(consent.text)},
                     allow_redirects=False)
    assert back.status_code == 302
    return http, verifier, parse_qs(urlparse(back.headers["Location"]).query)


def test_authorization_code_flow_with_pkce_and_posix_groups(stack):
    """docs/flows.md, flow 1 / RFC 6749 §4.1 + RFC 7636: IdP login, worker exchange, consent, code, tokens."""
    scope = "openid profile offline_access wlcg.groups storage.read:/atlas storage.create:/atlas/run1"
    http, verifier, params = code_flow(stack, scope, state="st-1")
    assert params["state"] == ["st-1"] and params["iss"] == [stack.url]  # RFC 9207
    response = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                            "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    body = response.json()
    claims = verify(stack, body["access_token"])
    assert claims["sub"] == "alice" and claims["client_id"] == CLIENT_ID and claims["wlcg.ver"] == "1.0"
    assert "storage.read:/atlas" in claims["scope"].split()
    assert "storage.create:/atlas/run1" in claims["scope"].split()
    assert set(claims["wlcg.groups"]) >= {"/atlas", "/physics"}  # posixGroup memberUid from LDAP
    id_token = pyjwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_token["aud"] == [CLIENT_ID] and id_token["nonce"] == "n-st-1" and id_token["sub"] == "alice"
    userinfo = requests.get(f"{stack.url}/auth/userinfo",
                            headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10)
    assert userinfo.status_code == 200 and userinfo.json()["preferred_username"] == "alice"
    # replaying the code fails (RFC 6749 §4.1.2)
    again = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                         "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refused_scope_goes_back_as_invalid_scope(stack):
    """docs/authorization.md: alice may not write bob's private directory; the consent page says so, and the
    client hears which scope and why."""
    http, _verifier, params = code_flow(stack, "openid storage.read:/atlas storage.modify:/private",
                                        expect_refusal="storage.modify:/private")
    assert params["error"] == ["invalid_scope"]
    assert "storage.modify:/private" in params["error_description"][0]


def test_public_client_needs_pkce_and_verifier_is_checked(stack):
    """RFC 7636 §4.4 / docs/tokens.md: PKCE S256 required for public clients; a wrong verifier fails."""
    http = stack.http()
    query = urlencode({"response_type": "code", "client_id": PUBLIC_CLIENT_ID, "redirect_uri": CLIENT_REDIRECT,
                       "scope": "openid", "state": "s"})
    response = http.get(f"{stack.url}/auth/authorize?{query}", allow_redirects=False)
    assert response.status_code == 302
    assert parse_qs(urlparse(response.headers["Location"]).query)["error"] == ["invalid_request"]

    _http, verifier, params = code_flow(stack, "openid", client_id=PUBLIC_CLIENT_ID)
    wrong = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                         "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier[::-1]},
                        client_id=PUBLIC_CLIENT_ID, secret=None)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_sign_in_cancelled_at_the_idp_goes_back_as_access_denied(stack):
    """RFC 6749 §4.1.2.1: the user cancels at the upstream IdP, so the authorization request ends at
    the client with ``access_denied``, its ``state`` and the issuer (RFC 9207), not on an issuer page."""
    http = stack.http()
    _verifier, challenge = pkce()
    back = idp_login(http, authorize_url(stack, "openid", challenge, state="st-cancel"), "alice",
                     "alice-idp-password", consent=False)
    assert back.is_redirect and back.headers["Location"].startswith(f"{stack.url}/auth/callback"), back.text[:500]
    callback = http.get(back.headers["Location"], allow_redirects=False)
    assert callback.status_code == 302 and urlparse(callback.headers["Location"]).path == "/auth/authorize"
    answer = http.get(urljoin(stack.url, callback.headers["Location"]), allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(CLIENT_REDIRECT)
    params = parse_qs(urlparse(answer.headers["Location"]).query)
    assert params["error"] == ["access_denied"] and params["state"] == ["st-cancel"]
    assert params["iss"] == [stack.url] and "code" not in params
    # the refusal is used once: the same request again asks to sign in
    again = http.get(urljoin(stack.url, callback.headers["Location"]), allow_redirects=False)
    assert again.status_code == 302 and "/auth/login" in again.headers["Location"]


def test_bad_browser_input_gets_readable_pages(stack):
    """docs/errors.md: tampered redirect URI, unknown client, missing/replayed state: a page, never a 500."""
    http = stack.http()
    _verifier, challenge = pkce()
    tampered = authorize_url(stack, "openid", challenge).replace("127.0.0.1%3A9", "evil.example.org")
    page = http.get(tampered, allow_redirects=False)
    assert page.status_code == 400 and "text/html" in page.headers["Content-Type"]
    assert "evil.example.org" not in page.headers.get("Location", "")
    unknown = http.get(authorize_url(stack, "openid", challenge, client_id="no-such-client"), allow_redirects=False)
    assert unknown.status_code in (400, 401) and "text/html" in unknown.headers["Content-Type"]
    no_state = http.get(f"{stack.url}/auth/callback?code=abc&state=def", allow_redirects=False)
    assert no_state.status_code == 400 and "start again" in no_state.text
    # a callback whose state does not match the login in progress
    http2 = stack.http()
    login = http2.get(f"{stack.url}/auth/login?next=/auth/device", allow_redirects=False)
    assert login.status_code == 302
    forged = http2.get(f"{stack.url}/auth/callback?code=forged&state=not-the-state&iss={stack.idp.issuer}",
                       allow_redirects=False)
    assert forged.status_code == 400 and "Sign-in failed" in forged.text
    unknown_code = http.get(f"{stack.url}/auth/device?user_code=BBBBB-BBBBB", allow_redirects=False)
    assert unknown_code.status_code == 400 and "not valid or has expired" in unknown_code.text


def device_start(stack, scope: str = "openid offline_access storage.read:/atlas") -> dict:
    response = requests.post(f"{stack.url}/auth/device/code", data={"scope": scope},
                             auth=(CLIENT_ID, CLIENT_SECRET),
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def device_poll(stack, device_code: str) -> requests.Response:
    return stack.token({"grant_type": DEVICE_GRANT, "device_code": device_code})


def device_decide(stack, user_code_as_typed: str, decision: str, login="alice", password="alice-idp-password"):
    http = stack.http()
    consent = sign_in_through_idp(stack, http, f"{stack.url}/auth/device?user_code={user_code_as_typed}",
                                  login, password)
    assert consent.status_code == 200 and "Command line tool" in consent.text, consent.text[:1000]
    code_field = consent.text.split('name="user_code" value="', 1)[1].split('"', 1)[0]
    done = http.post(f"{stack.url}/auth/device", data={"user_code": code_field, "decision": decision,
                                                      "csrf_token": csrf_token(consent.text)})
    assert done.status_code == 200
    return done


def poll_until(stack, device_code: str, interval: float = 1.0, timeout: float = 60) -> requests.Response:
    """Poll as a well-behaved client: at the interval, slowing down when told (RFC 8628 §3.5)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        response = device_poll(stack, device_code)
        error = response.json().get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            return response
    raise AssertionError("device flow did not complete")


def test_device_flow_approve(stack):
    """RFC 8628: pending, then tokens exactly once after approval recorded by the worker."""
    start = device_start(stack)
    assert len(start["user_code"]) == 11 and start["user_code"][5] == "-"
    assert start["verification_uri"] == f"{stack.url}/auth/device"
    assert device_poll(stack, start["device_code"]).json()["error"] == "authorization_pending"
    # typed in lower case without the dash
    device_decide(stack, start["user_code"].replace("-", "").lower(), "approve")
    response = poll_until(stack, start["device_code"])
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert verify(stack, tokens["access_token"])["scope"].split() == ["openid", "offline_access", "storage.read:/atlas"]
    id_token = verify(stack, tokens["id_token"], audience=CLIENT_ID)  # OIDC: openid was granted
    assert id_token["sub"] == "alice" and id_token["auth_time"] <= time.time()
    time.sleep(1.1)
    again = device_poll(stack, start["device_code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_device_flow_deny_and_refusal(stack):
    """RFC 8628 §3.5 access_denied when the user denies; RFC 6749 §5.2 invalid_scope when a scope
    cannot be granted (docs/scopes.md, "Errors")."""
    start = device_start(stack)
    device_decide(stack, start["user_code"], "deny")
    denied = poll_until(stack, start["device_code"])
    assert denied.status_code == 400 and denied.json()["error"] == "access_denied"

    start = device_start(stack, "storage.read:/private")
    device_decide(stack, start["user_code"], "approve")
    refused = poll_until(stack, start["device_code"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert "storage.read:/private" in refused.json()["error_description"]


def test_device_flow_slow_down(stack):
    """RFC 8628 §3.5: polling faster than the interval answers slow_down."""
    start = device_start(stack)
    first = device_poll(stack, start["device_code"])
    second = device_poll(stack, start["device_code"])
    assert first.json()["error"] == "authorization_pending"
    assert second.json()["error"] == "slow_down"


def test_device_flow_expires(issuer_stack, storage_tree):
    """RFC 8628 §3.5: expired_token once the device code's lifetime is over."""
    stack = issuer_stack(POSIX_PATH=str(storage_tree), DEVICE_CODE_LIFETIME=10)
    start = device_start(stack)
    assert start["expires_in"] == 10
    response = poll_until(stack, start["device_code"], timeout=40)
    assert response.json()["error"] == "expired_token"
    page = stack.http().get(f"{stack.url}/auth/device?user_code={start['user_code']}")
    assert page.status_code == 400


def test_device_code_survives_web_restart(stack):
    """docs/flows.md, flow 2: killing every web process between device authorization and approval loses nothing."""
    start = device_start(stack)
    stack.kill_web()
    stack.start_web()
    device_decide(stack, start["user_code"], "approve")
    stack.kill_web()
    stack.start_web()
    response = poll_until(stack, start["device_code"])
    assert response.status_code == 200, response.text


def test_refresh_rotation_reuse_and_idp_disable(stack):
    """docs/flows.md, flow 3: rotation, reuse of a rotated token revokes the family, narrower scope only,
    and a user disabled at the IdP loses the family."""
    scope = "openid offline_access storage.read:/atlas storage.create:/atlas/run1"
    _http, verifier, params = code_flow(stack, scope)
    first = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                         "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier}).json()
    # narrower scope (a sub-path of a granted path) is fine; wider is not
    narrow = stack.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                          "scope": "storage.read:/atlas/run1"})
    assert narrow.status_code == 200, narrow.text
    assert verify(stack, narrow.json()["access_token"])["scope"] == "storage.read:/atlas/run1"
    second = narrow.json()
    wider = stack.token({"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                         "scope": "storage.modify:/atlas"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"

    # reuse of the first (rotated) token after the grace window revokes the family
    time.sleep(int(stack.env.get("REFRESH_REUSE_GRACE", "10")) + 1)
    reuse = stack.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = stack.token({"grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    introspect = requests.post(f"{stack.url}/auth/introspect", data={"token": second["access_token"]},
                               auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert introspect.json() == {"active": False}

    # a fresh family; then the IdP disables alice: the next refresh (re-check every time here) fails
    _http, verifier, params = code_flow(stack, scope)
    fresh = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                         "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier}).json()
    ok = stack.token({"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]})
    assert ok.status_code == 200, ok.text
    stack.idp.disable("alice")
    gone = stack.token({"grant_type": "refresh_token", "refresh_token": ok.json()["refresh_token"]})
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    assert "disabled" in gone.json()["error_description"]


def test_worker_down_means_waiting_and_nothing_lost(stack):
    """docs/flows.md, flow 1: with the worker gone, the IdP callback answers at once with a page
    that reloads itself (no web thread waits for the worker), and the sign-in completes when a
    worker is back; a device approval made while no worker runs waits in Redis and completes
    when one is back."""
    start = device_start(stack)
    stack.worker.stop()
    http = stack.http()
    verify = f"{stack.url}/auth/device?user_code={start['user_code']}"
    back = idp_login(http, verify, "alice", "alice-idp-password")
    began = time.monotonic()
    response = http.get(back.headers["Location"], allow_redirects=False)
    assert response.status_code == 202 and time.monotonic() - began < 10
    assert 'http-equiv="refresh"' in response.text and "/auth/callback/wait" in response.text

    stack.start_worker()  # takes the exchange that waited in Redis
    deadline = time.monotonic() + 30
    while response.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.5)
        response = http.get(f"{stack.url}/auth/callback/wait", allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/device?user_code=")
    consent = http.get(urljoin(stack.url, response.headers["Location"]), allow_redirects=False)
    assert consent.status_code == 200, consent.text[:500]
    stack.worker.stop()
    done = http.post(f"{stack.url}/auth/device", data={"user_code": start["user_code"], "decision": "approve",
                                                      "csrf_token": csrf_token(consent.text)})
    assert done.status_code == 200
    time.sleep(1.1)
    assert device_poll(stack, start["device_code"]).json()["error"] == "authorization_pending"
    stack.start_worker()
    assert poll_until(stack, start["device_code"]).status_code == 200
