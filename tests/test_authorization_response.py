"""Authorization responses at ``/auth/authorize``: RFC 9207 ``iss`` on every redirect, errors
included; request objects refused (OIDC Core §6, RFC 9101); ``prompt=none`` (OIDC Core
§3.1.2.6); loopback redirect URIs on any port (RFC 8252 §7.3). See docs/conformance.md."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt as pyjwt
import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.login import SESSION_KEY
from scitoken_issuer.services.redirects import loopback_match

from .conftest import make_app
from .support.dev_login import DEV_PASSWORDS, approve, authorize_url, csrf_token, pkce, redirect_params, sign_in

ISSUER = "http://issuer.test"
REDIRECT = "https://app.example.org/cb"
LOOPBACK = "http://127.0.0.1:8765/cb"


@pytest.fixture
def issuer(tmp_path):
    """The issuer with the development login; no app context held across requests (CSRF)."""
    app = make_app(tmp_path)
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "portal", "grant_types": ["authorization_code"], "scope": "openid email profile",
             "redirect_uris": [REDIRECT, LOOPBACK, "http://[::1]/cb"], "token_endpoint_auth_method": "none"},
            admin=True, source="admin")
        db.session.commit()
        app.config["test_client_id"] = registration.client.client_id
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(issuer):
    return issuer.test_client()


@pytest.fixture
def client_id(issuer):
    return issuer.config["test_client_id"]


def request_params(client_id: str, **extra) -> dict:
    _, challenge = pkce()
    params = {"client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid", "state": "st-9",
              "code_challenge": challenge, "code_challenge_method": "S256", "nonce": "n-9"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize("extra, error", [
    ({"prompt": "none"}, "login_required"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"scope": "openid storage.read:relative"}, "invalid_scope"),
    ({"prompt": "none login"}, "invalid_request"),
], ids=["prompt-none", "pkce-plain", "response-type-token", "response-type-hybrid", "bad-scope", "prompt-none-login"])
def test_error_redirect_before_consent_carries_iss(client, client_id, extra, error):
    """RFC 9207 §2: every authorization response, error responses included, carries ``iss``
    (discovery advertises ``authorization_response_iss_parameter_supported``), with ``state``."""
    response = client.get(authorize_url(**request_params(client_id, **extra)))
    params = redirect_params(response, REDIRECT)
    assert params["error"] == error and params["state"] == "st-9"
    assert params["iss"] == ISSUER
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["authorization_response_iss_parameter_supported"] is True and meta["issuer"] == ISSUER


def test_denied_and_approved_redirects_carry_iss(client, client_id):
    """RFC 9207 §2: the redirects after consent carry ``iss`` too (approve and deny)."""
    sign_in(client)
    url = authorize_url(**request_params(client_id))
    params = redirect_params(approve(client, url), REDIRECT)
    assert "code" in params and params["iss"] == ISSUER
    page = client.get(authorize_url(**request_params(client_id, nonce="n-10")))
    denied = client.post(page.request.url, data={"decision": "deny", "csrf_token": csrf_token(page.get_data(as_text=True))})
    params = redirect_params(denied, REDIRECT)
    assert params["error"] == "access_denied" and params["iss"] == ISSUER


def test_unverified_redirect_uri_gets_a_page_not_a_redirect(client, client_id):
    """RFC 6749 §4.1.2.1: with a redirect URI that does not match, nothing is sent to it."""
    response = client.get(authorize_url(**request_params(client_id, redirect_uri="https://evil.example/cb",
                                                         prompt="none")))
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("name, values", [
    ("nonce", ["n-1", "n-2"]), ("prompt", ["login", "consent"]), ("audience", ["https://a.example", "https://b.example"]),
    ("max_age", ["5", "600"]), ("login_hint", ["alice", "bob"]),
])
def test_repeated_parameters_are_refused(client, client_id, name, values):
    """RFC 6749 §3.1: request parameters MUST NOT be included more than once — each of them, not
    only the five authlib checks; with a verified redirect URI the error is redirected
    (§4.1.2.1) with ``state`` and ``iss`` (RFC 9207 §2), before any sign-in."""
    pairs = [(k, v) for k, v in request_params(client_id).items() if k != name]
    response = client.get("/auth/authorize?" + urlencode([("response_type", "code"), *pairs,
                                                          *((name, value) for value in values)]))
    params = redirect_params(response, REDIRECT)
    assert params["error"] == "invalid_request" and name in params["error_description"]
    assert params["state"] == "st-9" and params["iss"] == ISSUER


def test_missing_or_unsupported_response_type_is_described(client, client_id):
    """RFC 6749 §4.1.2.1: a missing ``response_type`` is ``invalid_request`` (a required parameter
    is missing), an unknown one ``unsupported_response_type``; each description says which."""
    missing = redirect_params(client.get("/auth/authorize?" + urlencode(request_params(client_id))), REDIRECT)
    assert missing["error"] == "invalid_request" and missing["error_description"] == "response_type is required"
    assert missing["state"] == "st-9" and missing["iss"] == ISSUER
    token = redirect_params(client.get(authorize_url(**request_params(client_id, response_type="token"))), REDIRECT)
    assert token["error"] == "unsupported_response_type"
    assert token["error_description"] == "response_type token is not supported"


@pytest.mark.parametrize("parameter, error", [
    ("request_uri", "request_uri_not_supported"),
    ("request", "request_not_supported"),
])
def test_request_objects_are_refused_not_ignored(client, client_id, parameter, error):
    """OIDC Core §6.1–§6.2 / RFC 9101 §10.1: unsupported ``request``/``request_uri`` get their
    own error (with ``iss``), and discovery says they are not supported."""
    value = "urn:example:req" if parameter == "request_uri" else "eyJhbGciOiJub25lIn0.e30."
    response = client.get(authorize_url(**request_params(client_id, **{parameter: value})))
    params = redirect_params(response, REDIRECT)
    assert params["error"] == error and params["iss"] == ISSUER and params["state"] == "st-9"
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["request_uri_parameter_supported"] is False and meta["request_parameter_supported"] is False


@pytest.mark.parametrize("parameter, error", [
    ("request_uri", "request_uri_not_supported"),
    ("request", "request_not_supported"),
])
def test_request_object_is_refused_before_what_it_would_carry(client, client_id, parameter, error):
    """A client that sends a request object (RFC 9101) puts PKCE and the nonce inside it: the
    answer names the request object, every time, not the ``code_challenge`` missing outside it."""
    value = "urn:example:req" if parameter == "request_uri" else "eyJhbGciOiJub25lIn0.e30."
    for _ in range(20):  # the checks once ran in an order that changed from run to run
        response = client.get(authorize_url(**request_params(client_id, code_challenge=None,
                                                             code_challenge_method=None, **{parameter: value})))
        assert redirect_params(response, REDIRECT)["error"] == error


@pytest.mark.parametrize("mode", ["fragment", "form_post", "jwt", "query.jwt"])
def test_unsupported_response_mode_is_refused_not_ignored(client, client_id, mode):
    """OAuth 2.0 Multiple Response Type Encoding Practices §2.1: discovery lists only ``query`` in
    ``response_modes_supported``; a client asking for another mode gets ``invalid_request`` (in
    the query, with ``state`` and RFC 9207 ``iss``), never a code in a mode it did not ask for."""
    sign_in(client)
    response = client.get(authorize_url(**request_params(client_id, response_mode=mode)))
    params = redirect_params(response, REDIRECT)
    assert params["error"] == "invalid_request" and "response_mode" in params["error_description"]
    assert params["state"] == "st-9" and params["iss"] == ISSUER and "code" not in params
    assert client.get("/.well-known/openid-configuration").get_json()["response_modes_supported"] == ["query"]
    approved = redirect_params(approve(client, authorize_url(**request_params(client_id, response_mode="query"))),
                               REDIRECT)
    assert "code" in approved


def signed_in_long_ago(client, seconds: int = 1000) -> None:
    """Sign in, then age the sign-in by ``seconds`` (the session's ``auth_time``)."""
    sign_in(client)
    with client.session_transaction() as session:
        session[SESSION_KEY] = {**session[SESSION_KEY], "auth_time": int(time.time()) - seconds}


def sign_in_again(client, response) -> str:
    """Follow a redirect to the sign-in page, sign in there: where it sends the browser back to."""
    location = urlsplit(response.headers["Location"])
    assert response.status_code == 302 and location.path == "/auth/login", response.headers.get("Location")
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["fresh"] == "1"
    form = client.get(f"{location.path}?{location.query}")
    back = client.post("/auth/login", data={"username": "alice", "password": DEV_PASSWORDS["alice"],
                                            "next": query["next"], "csrf_token": csrf_token(form.get_data(as_text=True))})
    assert back.status_code == 302 and back.headers["Location"] == query["next"]
    return query["next"]


def id_token_auth_time(client, client_id: str, url: str, verifier: str) -> int:
    """Approve the consent page at ``url``, exchange the code: the ID token's ``auth_time``."""
    code = redirect_params(approve(client, url), REDIRECT)["code"]
    token = client.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                             "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert token.status_code == 200, token.get_json()
    return pyjwt.decode(token.get_json()["id_token"], options={"verify_signature": False})["auth_time"]


def test_prompt_login_signs_the_user_in_again(client, client_id):
    """OIDC Core §3.1.2.1 ``prompt=login``: a signed-in user is asked to sign in again before
    consent, and the ID token's ``auth_time`` is that new sign-in's."""
    signed_in_long_ago(client)
    verifier, challenge = pkce()
    response = client.get(authorize_url(**request_params(client_id, prompt="login consent", code_challenge=challenge)))
    back = sign_in_again(client, response)
    assert "login" not in parse_qs(urlsplit(back).query)["prompt"][0].split()
    assert id_token_auth_time(client, client_id, back, verifier) >= time.time() - 60


@pytest.fixture(params=["forward", "reverse"])
def hook_order(request, monkeypatch):
    """authlib keeps a grant's hooks in a set, whose order follows memory addresses: run them
    sorted by name, then the other way round, so that no answer depends on that order."""
    from authlib.oauth2.rfc6749.hooks import Hookable

    def execute_hook(self, hook_type, *args, **kwargs):
        hooks = sorted(self._hooks[hook_type], key=lambda hook: getattr(hook, "__qualname__", repr(hook)),
                       reverse=request.param == "reverse")
        for hook in hooks:
            hook(self, *args, **kwargs)

    monkeypatch.setattr(Hookable, "execute_hook", execute_hook)
    return request.param


def test_sign_in_older_than_max_age_is_repeated(client, client_id, hook_order):
    """OIDC Core §3.1.2.1 ``max_age``: a sign-in older than it is repeated ("MUST attempt to
    actively re-authenticate"); a younger one is not; with ``prompt=none`` it is ``login_required``;
    a value that is not a number of seconds is ``invalid_request``."""
    signed_in_long_ago(client, 1000)
    assert client.get(authorize_url(**request_params(client_id, max_age="3600"))).status_code == 200  # consent
    refused = client.get(authorize_url(**request_params(client_id, max_age="60", prompt="none")))
    assert redirect_params(refused, REDIRECT)["error"] == "login_required"
    for bad in ("-1", "1.5", "soon"):
        refused = client.get(authorize_url(**request_params(client_id, max_age=bad)))
        assert redirect_params(refused, REDIRECT)["error"] == "invalid_request", bad

    verifier, challenge = pkce()
    response = client.get(authorize_url(**request_params(client_id, max_age="60", code_challenge=challenge)))
    back = sign_in_again(client, response)
    assert "max_age" not in parse_qs(urlsplit(back).query)
    assert id_token_auth_time(client, client_id, back, verifier) >= time.time() - 60


def test_max_age_is_not_undone_by_prompt_consent(client, client_id, hook_order):
    """OIDC Core §3.1.2.1: ``prompt=consent`` with ``max_age`` still repeats a sign-in older
    than ``max_age`` before the consent page (both rules apply, in a fixed order)."""
    signed_in_long_ago(client, 1000)
    verifier, challenge = pkce()
    response = client.get(authorize_url(**request_params(client_id, max_age="60", prompt="consent",
                                                         code_challenge=challenge)))
    back = sign_in_again(client, response)
    assert parse_qs(urlsplit(back).query)["prompt"] == ["consent"]
    assert id_token_auth_time(client, client_id, back, verifier) >= time.time() - 60


def test_prompt_none_when_signed_in_is_consent_required(client, client_id):
    """OIDC Core §3.1.2.6: ``prompt=none`` must not show a page; this issuer always asks for
    consent, so a signed-in user gets ``consent_required`` (not the consent page)."""
    sign_in(client)
    response = client.get(authorize_url(**request_params(client_id, prompt="none")))
    params = redirect_params(response, REDIRECT)
    assert params["error"] == "consent_required" and params["iss"] == ISSUER


@pytest.mark.parametrize("presented", [
    "http://127.0.0.1:51234/cb", "http://127.0.0.1/cb", "http://127.0.0.1:8765/cb",
])
def test_loopback_redirect_on_any_port(client, client_id, presented):
    """RFC 8252 §7.3: a redirect registered on a loopback IP literal matches any port; the code
    goes to the port asked for, and the token request must name that same URI (RFC 6749 §4.1.3)."""
    sign_in(client)
    verifier, challenge = pkce()
    url = authorize_url(**request_params(client_id, redirect_uri=presented, code_challenge=challenge))
    params = redirect_params(approve(client, url), presented)
    token = {"grant_type": "authorization_code", "code": params["code"], "client_id": client_id,
             "code_verifier": verifier}
    for other in {"http://127.0.0.1:40000/cb", LOOPBACK} - {presented}:
        wrong = client.post("/auth/token", data={**token, "redirect_uri": other})
        assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    response = client.post("/auth/token", data={**token, "redirect_uri": presented})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("presented", [
    "http://127.0.0.1:51234/cb/other", "http://127.0.0.1:51234/cb?x=1", "http://127.0.0.2:51234/cb",
    "http://localhost:8765/cb", "https://127.0.0.1:51234/cb", "http://user@127.0.0.1:51234/cb",
    "http://127.0.0.1:99999/cb", "http://[::1]:5000/cb/", "http://127.0.0.1:51234/CB",
])
def test_loopback_port_freedom_only(client, client_id, presented):
    """RFC 8252 §7.3 relaxes the port only: scheme, IP literal, path and query still match exactly,
    and ``localhost`` gets no port freedom (RFC 8252 §8.3). A mismatch is a page, not a redirect."""
    response = client.get(authorize_url(**request_params(client_id, redirect_uri=presented)))
    assert response.status_code == 400 and "Location" not in response.headers


def test_loopback_match_rule():
    """The one loopback rule (``services/redirects.py``), IPv4 and IPv6 literals."""
    assert loopback_match("http://[::1]/cb", "http://[::1]:6000/cb")
    assert loopback_match("http://127.0.0.1:8765/cb?a=1", "http://127.0.0.1:1/cb?a=1")
    assert not loopback_match("http://[::1]/cb", "http://127.0.0.1:6000/cb")
    assert not loopback_match("https://127.0.0.1/cb", "https://127.0.0.1:6000/cb")
    assert not loopback_match("http://127.0.0.1/cb", "http://127.0.0.1:6000/cb#frag")
    assert not loopback_match("http://example.org/cb", "http://example.org:6000/cb")
