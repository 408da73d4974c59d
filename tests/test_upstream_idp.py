"""The upstream IdP client (scitoken_issuer.services.upstream_idp) against a real oidc-provider.

OIDC Core 1.0 §3.1 (code flow, id token validation), RFC 7636 (PKCE), RFC 9207 (``iss``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc import util as b64
from joserfc.jwk import KeySet, OctKey, RSAKey

from scitoken_issuer.services.upstream_idp import (
    LoginState, UpstreamIdP, UpstreamLoginError, UpstreamUnavailable, UpstreamUserDisabled,
)
from tests.support.upstream_idp import IdP, idp_login

CLIENT_ID = "scitoken-issuer"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
REDIRECT_URI = "http://127.0.0.1:9/auth/callback"  # never contacted: idp_login stops before it
ACCOUNTS = [
    {"login": "alice", "password": "alice-pw", "name": "Alice A.", "email": "alice@example.org"},
    {"login": "carol", "password": "carol-pw", "sub": "carol-subject-7"},
    {"login": "mallory", "password": "mallory-pw", "preferred_username": "../root"},
]


def start(oidc_idp) -> IdP:
    return oidc_idp(clients=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                              "redirect_uris": [REDIRECT_URI]}], accounts=ACCOUNTS)


@pytest.fixture(scope="module")
def idp(oidc_idp) -> IdP:
    return start(oidc_idp)


@pytest.fixture
def upstream(idp: IdP) -> UpstreamIdP:
    return UpstreamIdP(idp.issuer, CLIENT_ID, CLIENT_SECRET, timeout=5)


def redirect_params(upstream: UpstreamIdP, login: str, password: str,
                    consent: bool = True) -> tuple[dict[str, str], LoginState]:
    """Log in at the IdP like a browser; the query of the redirect back to us, and our login state."""
    url, login_state = upstream.begin_login(REDIRECT_URI)
    response = idp_login(requests.Session(), url, login, password, consent=consent)
    assert response.is_redirect, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(parse_qsl(urlsplit(location).query)), login_state


def test_full_login(upstream: UpstreamIdP) -> None:
    """OIDC Core §3.1.3.7: a valid id token gives the user name from preferred_username."""
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    login_state = LoginState.from_dict(json.loads(json.dumps(login_state.to_dict())))
    login = upstream.finish_login(params, login_state)
    assert login.subject == "alice"
    assert login.username == "alice"
    assert login.claims["name"] == "Alice A."  # profile scope; email was not asked
    assert login.claims["aud"] == CLIENT_ID
    assert login.refresh_token and login.id_token
    assert login.refresh_token not in repr(login)


def test_subject_and_username_differ(upstream: UpstreamIdP) -> None:
    params, login_state = redirect_params(upstream, "carol", "carol-pw")
    login = upstream.finish_login(params, login_state)
    assert (login.subject, login.username) == ("carol-subject-7", "carol")


def test_authorization_request(upstream: UpstreamIdP) -> None:
    """RFC 7636 §4.3: S256 challenge; state and nonce random with at least 128 bits."""
    url, first = upstream.begin_login(REDIRECT_URI)
    _, second = upstream.begin_login(REDIRECT_URI)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] != first.code_verifier
    assert query["state"] == first.state and query["nonce"] == first.nonce
    assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == REDIRECT_URI
    assert "offline_access" in query["scope"].split()
    assert query["prompt"] == "consent"  # OIDC Core §11: offline_access needs prompt=consent
    assert min(len(first.state), len(first.nonce)) >= 22  # 22 url-safe characters = 132 bits
    assert first.state != second.state and first.nonce != second.nonce


def test_fresh_sign_in_asks_the_idp_for_prompt_login(upstream: UpstreamIdP) -> None:
    """OIDC Core §3.1.2.1: when our client asked ``prompt=login`` or ``max_age``, the IdP is asked
    for ``prompt=login`` too (with ``consent``, which ``offline_access`` needs, OIDC Core §11), so
    its own session does not stand in for the new sign-in; the IdP then asks for the password."""
    url, _ = upstream.begin_login(REDIRECT_URI, fresh=True)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["prompt"].split() == ["login", "consent"]
    url, _ = upstream.begin_login(REDIRECT_URI, scope="openid", fresh=True)
    assert parse_qs(urlsplit(url).query)["prompt"] == ["login"]
    http = requests.Session()
    url, login_state = upstream.begin_login(REDIRECT_URI)
    params = dict(parse_qsl(urlsplit(idp_login(http, url, "alice", "alice-pw").headers["Location"]).query))
    assert upstream.finish_login(params, login_state).username == "alice"
    again = http.get(upstream.begin_login(REDIRECT_URI, fresh=True)[0], allow_redirects=True)
    assert again.status_code == 200 and 'name="password"' in again.text, again.text[:500]


def test_wrong_password_stays_at_idp(upstream: UpstreamIdP) -> None:
    url, _ = upstream.begin_login(REDIRECT_URI)
    response = idp_login(requests.Session(), url, "alice", "wrong")
    assert response.status_code == 401


def test_wrong_state_refused(upstream: UpstreamIdP) -> None:
    """RFC 6749 §10.12: a response whose state is not ours is refused (CSRF)."""
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    with pytest.raises(UpstreamLoginError, match="state"):
        forged = ("y" if params["state"][0] == "x" else "x") + params["state"][1:]  # always differs
        upstream.finish_login({**params, "state": forged}, login_state)
    with pytest.raises(UpstreamLoginError, match="state"):
        upstream.finish_login({k: v for k, v in params.items() if k != "state"}, login_state)


def test_replayed_code_refused(upstream: UpstreamIdP) -> None:
    """RFC 6749 §4.1.2: the IdP refuses a code used twice."""
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    upstream.finish_login(params, login_state)
    with pytest.raises(UpstreamLoginError, match="invalid_grant"):
        upstream.finish_login(params, login_state)


def test_wrong_verifier_refused(upstream: UpstreamIdP) -> None:
    """RFC 7636 §4.6: the code is only exchanged with the verifier of its challenge."""
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    forged = LoginState(**{**login_state.to_dict(), "code_verifier": "v" * 43})
    with pytest.raises(UpstreamLoginError, match="invalid_grant"):
        upstream.finish_login(params, forged)


def test_access_denied_has_message(upstream: UpstreamIdP) -> None:
    """RFC 6749 §4.1.2.1: an error response becomes a readable message."""
    params, login_state = redirect_params(upstream, "alice", "alice-pw", consent=False)
    assert params["error"] == "access_denied"
    with pytest.raises(UpstreamLoginError, match="refused the login.*access_denied"):
        upstream.finish_login(params, login_state)


def test_issuer_parameter_checked(upstream: UpstreamIdP) -> None:
    """RFC 9207 §2.4: a wrong iss, or none from an IdP that advertises it, is refused."""
    assert upstream.metadata()["authorization_response_iss_parameter_supported"] is True
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    with pytest.raises(UpstreamLoginError, match="wrong identity provider"):
        upstream.finish_login({**params, "iss": "http://127.0.0.1:1"}, login_state)
    with pytest.raises(UpstreamLoginError, match="wrong identity provider"):
        upstream.finish_login({k: v for k, v in params.items() if k != "iss"}, login_state)


def test_expired_login_state_refused(upstream: UpstreamIdP) -> None:
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    old = LoginState(**{**login_state.to_dict(), "created_at": time.time() - 3600})
    with pytest.raises(UpstreamLoginError, match="too long"):
        upstream.finish_login(params, old)


def test_unsafe_username_refused(upstream: UpstreamIdP) -> None:
    params, login_state = redirect_params(upstream, "mallory", "mallory-pw")
    with pytest.raises(UpstreamLoginError, match="not a valid POSIX user name"):
        upstream.finish_login(params, login_state)


def test_missing_username_claim_refused(idp: IdP) -> None:
    upstream = UpstreamIdP(idp.issuer, CLIENT_ID, CLIENT_SECRET, username_claim="uid", timeout=5)
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    with pytest.raises(UpstreamLoginError, match="'uid'"):
        upstream.finish_login(params, login_state)


def test_recheck_rotates_then_disabled_user_refused(idp: IdP, upstream: UpstreamIdP) -> None:
    """docs/flows.md, flow 3: the IdP refresh token re-checks the user; disabled at the IdP -> invalid_grant."""
    params, login_state = redirect_params(upstream, "carol", "carol-pw")
    first = upstream.finish_login(params, login_state).refresh_token
    second = upstream.recheck(first)
    assert second and second != first  # the test IdP rotates refresh tokens
    idp.disable("carol")
    try:
        with pytest.raises(UpstreamUserDisabled):
            upstream.recheck(second)
    finally:
        idp.enable("carol")
    with pytest.raises(UpstreamUserDisabled):  # a rotated-away token is refused as well
        upstream.recheck(first)


def test_idp_stopped_is_unavailable(oidc_idp) -> None:
    """docs/errors.md: a dependency that is down is reported as unavailable (503), not as a login error."""
    own = start(oidc_idp)
    upstream = UpstreamIdP(own.issuer, CLIENT_ID, CLIENT_SECRET, timeout=5)
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    refresh_token = upstream.finish_login(params, login_state).refresh_token
    params, login_state = redirect_params(upstream, "alice", "alice-pw")
    own.stop()
    with pytest.raises(UpstreamUnavailable):
        upstream.recheck(refresh_token)
    with pytest.raises(UpstreamUnavailable):
        upstream.finish_login(params, login_state)
    with pytest.raises(UpstreamUnavailable):
        UpstreamIdP(own.issuer, CLIENT_ID, CLIENT_SECRET, timeout=5).begin_login(REDIRECT_URI)


def test_idp_hanging_is_unavailable() -> None:
    """A listening IdP that never answers times out into UpstreamUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        address = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(UpstreamUnavailable):
            UpstreamIdP(address, CLIENT_ID, CLIENT_SECRET, timeout=0.5).metadata()


class BrokenIdP(BaseHTTPRequestHandler):
    """Serves discovery, then answers every other request with HTTP 502 (a proxy in front of a dead IdP)."""

    def do_GET(self) -> None:
        if self.path != "/.well-known/openid-configuration":
            return self.send_error(502)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps({"issuer": base, "authorization_endpoint": f"{base}/auth",
                           "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.send_error(502)

    def log_message(self, *args) -> None:
        pass


def test_idp_server_error_is_unavailable() -> None:
    """docs/errors.md: a 5xx from the IdP's token endpoint is unavailability, not a disabled user."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenIdP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        upstream = UpstreamIdP(f"http://127.0.0.1:{server.server_address[1]}", CLIENT_ID, CLIENT_SECRET,
                               timeout=5)
        with pytest.raises(UpstreamUnavailable):
            upstream.recheck("some-refresh-token")
        _, login_state = upstream.begin_login(REDIRECT_URI)
        with pytest.raises(UpstreamUnavailable):
            upstream.finish_login({"state": login_state.state, "code": "c"}, login_state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- id token validation with a locally signed token (OIDC Core §3.1.3.7) -------------------------

LOCAL_ISSUER = "https://idp.example.org"
NONCE = "n-0123456789abcdef0123"


@pytest.fixture
def local() -> tuple[UpstreamIdP, RSAKey]:
    """An UpstreamIdP whose discovery document and keys are set locally (no network)."""
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    upstream = UpstreamIdP(LOCAL_ISSUER, CLIENT_ID, CLIENT_SECRET)
    upstream._metadata = {"issuer": LOCAL_ISSUER, "authorization_endpoint": f"{LOCAL_ISSUER}/auth",
                          "token_endpoint": f"{LOCAL_ISSUER}/token", "jwks_uri": f"{LOCAL_ISSUER}/jwks",
                          "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"]}
    upstream._metadata_at = time.monotonic()
    upstream._jwks = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    upstream._jwks_at = time.monotonic()
    return upstream, key


def id_token(key, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "sub": "alice", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
              "nonce": NONCE, "preferred_username": "alice", **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def test_local_id_token_valid(local) -> None:
    upstream, key = local
    assert upstream.validate_id_token(id_token(key), NONCE)["sub"] == "alice"
    assert upstream.validate_id_token(id_token(key, aud=[CLIENT_ID, "other"], azp=CLIENT_ID), NONCE)


@pytest.mark.parametrize("overrides", [
    {"nonce": "n-other"}, {"nonce": None},
    {"iss": "https://evil.example.org"}, {"iss": None},
    {"aud": "other-client"}, {"aud": ["other", "more"]},
    {"aud": [CLIENT_ID, "other"]},  # several audiences need azp (§3.1.3.7 step 4)
    {"azp": "other-client"},
    {"exp": int(time.time()) - 3600}, {"exp": None},
    {"iat": int(time.time()) + 3600}, {"sub": None},
], ids=repr)
def test_local_id_token_bad_claims_refused(local, overrides) -> None:
    upstream, key = local
    with pytest.raises(UpstreamLoginError):
        upstream.validate_id_token(id_token(key, **overrides), NONCE)


def test_local_id_token_tampered_refused(local) -> None:
    upstream, key = local
    header, payload, signature = id_token(key).split(".")
    claims = json.loads(b64.urlsafe_b64decode(payload.encode()))
    forged = b64.urlsafe_b64encode(json.dumps({**claims, "sub": "root"}).encode()).decode()
    with pytest.raises(UpstreamLoginError):
        upstream.validate_id_token(f"{header}.{forged}.{signature}", NONCE)


def test_local_id_token_other_key_or_alg_refused(local) -> None:
    """Only the IdP's asymmetric keys count: not another key, not HS256 with the client secret, not none."""
    upstream, _ = local
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(UpstreamLoginError):
        upstream.validate_id_token(id_token(stranger), NONCE)
    secret = OctKey.import_key(CLIENT_SECRET)
    claims = json.loads(b64.urlsafe_b64decode(id_token(stranger).split(".")[1].encode()))
    with pytest.raises(UpstreamLoginError):
        upstream.validate_id_token(jwt.encode({"alg": "HS256"}, claims, secret), NONCE)
    unsigned = ".".join([b64.urlsafe_b64encode(b'{"alg":"none"}').decode(),
                         id_token(stranger).split(".")[1], ""])
    with pytest.raises(UpstreamLoginError):
        upstream.validate_id_token(unsigned, NONCE)
