"""Security headers, sign-out and cross-site form posts (docs/security-web.md).

Every HTML page (each template, each error page) sends a CSP with ``frame-ancestors 'none'``,
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; JSON gets ``nosniff``.
With no Referer (no-referrer) the https CSRF defence is the session-bound token, a SameSite
``__Host-`` cookie and Fetch Metadata (``Sec-Fetch-Site``) / ``Origin``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.web_security import CONTENT_SECURITY_POLICY

from .conftest import basic_auth, make_app
from .test_policy import write_users

TEMPLATES = Path(__file__).resolve().parents[1] / "scitoken_issuer" / "templates"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def app(tmp_path):
    """No app context held across requests: flask-wtf caches its token in ``g``."""
    app = make_app(tmp_path, DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def https_app(tmp_path):
    app = make_app(tmp_path, ISSUER_ADDRESS="https://issuer.test", DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    yield app
    with app.app_context():
        db.engine.dispose()


class HttpsClient:
    """A test client whose every request is https://issuer.test (``request.is_secure``)."""

    def __init__(self, app):
        self.client = app.test_client()

    def get(self, path, **kwargs):
        return self.client.get(path, base_url="https://issuer.test", **kwargs)

    def post(self, path, **kwargs):
        return self.client.post(path, base_url="https://issuer.test", **kwargs)


def token_of(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def sign_in(client, **headers) -> object:
    form = client.get("/auth/login", headers=headers)
    return client.post("/auth/login", data={"username": "alice", "password": "pw", "next": "/auth/device",
                                            "csrf_token": token_of(form)}, headers=headers)


def user_code(app) -> str:
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "cli", "grant_types": [DEVICE_GRANT], "scope": "openid"}, admin=False, source="dynamic")
        db.session.commit()
        client_id, secret = registration.client.client_id, registration.client_secret
    started = app.test_client().post("/auth/device/code", data={"scope": "openid"}, headers=basic_auth(client_id, secret))
    assert started.status_code == 200, started.get_data(as_text=True)
    return started.get_json()["user_code"]


def assert_html_headers(response) -> None:
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"  # the back button asks again


def test_every_page_sends_security_headers(app):
    """CSP 3 frame-ancestors (clickjacking), nosniff, no-referrer, no-store on every template and error page."""
    client = app.test_client()
    code = user_code(app)
    seen = {}
    seen["device_code.html"] = client.get("/auth/device")
    seen["device_code.html wrong code"] = client.get("/auth/device?user_code=BBBBB-BBBBB")
    seen["dev_login.html"] = client.get("/auth/login")
    seen["logout.html"] = client.get("/auth/logout")
    seen["error.html callback"] = client.get("/auth/callback?code=x&state=y")
    seen["error.html authorize"] = client.get("/auth/authorize?client_id=nope&response_type=code")
    seen["error.html 404"] = client.get("/auth/device/nothing-here")
    seen["error.html 405"] = client.put("/auth/login")
    seen["redirect to sign-in"] = client.get(f"/auth/device?user_code={code}")
    assert sign_in(client).status_code == 302
    consent = seen["consent.html"] = client.get(f"/auth/device?user_code={code}")
    seen["device_done.html"] = client.post("/auth/device", data={"user_code": code, "decision": "deny",
                                                                 "csrf_token": token_of(consent)})
    seen["message.html"] = client.post("/auth/logout", data={"csrf_token": token_of(client.get("/auth/logout"))})
    for name, response in seen.items():
        assert response.status_code < 500, name
        assert_html_headers(response)
    assert "Request denied" in seen["device_done.html"].get_data(as_text=True)
    assert "Signed out" in seen["message.html"].get_data(as_text=True)


def test_server_error_page_sends_headers(app):
    """The 500 page (an unexpected exception) carries the headers too."""
    app.view_functions["oauth.login.logout_form"] = lambda: 1 / 0
    response = app.test_client().get("/auth/logout")
    assert response.status_code == 500
    assert_html_headers(response)


def test_rate_limited_page_sends_headers(tmp_path):
    app = make_app(tmp_path, FAILED_USER_CODE_LIMIT="1/minute")
    client = app.test_client()
    client.get("/auth/device?user_code=BBBBB-BBBBB")
    response = client.get("/auth/device?user_code=BBBBB-BBBBC")
    assert response.status_code == 429
    assert_html_headers(response)


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/auth/certs", "/auth/token", "/healthz"])
def test_json_answers_are_nosniff(client, path):
    response = client.post(path) if path == "/auth/token" else client.get(path)
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_need_no_inline_code(template):
    """``default-src 'self'`` forbids inline styles and scripts: the templates have none."""
    text = (TEMPLATES / template).read_text()
    assert not re.search(r"<style|<script|\sstyle=|\son[a-z]+=|javascript:", text, re.IGNORECASE)


def test_stylesheet_is_served_from_the_issuer(client):
    page = client.get("/auth/device").get_data(as_text=True)
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1)
    assert href.startswith("/")
    with client.get(href) as css:
        assert css.status_code == 200 and css.mimetype == "text/css" and b"body" in css.get_data()
        assert css.headers["X-Content-Type-Options"] == "nosniff"


def test_logout_by_get_does_not_sign_out(app):
    """GET /auth/logout only shows a form: a link or an <img> on another site cannot sign users out."""
    client = app.test_client()
    code = user_code(app)
    sign_in(client)
    page = client.get("/auth/logout")
    assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
    assert "Authorize" in client.get(f"/auth/device?user_code={code}").get_data(as_text=True)  # still signed in


def test_logout_post_needs_csrf_token(app):
    client = app.test_client()
    code = user_code(app)
    sign_in(client)
    refused = client.post("/auth/logout")
    assert refused.status_code == 400 and "nothing was done" in refused.get_data(as_text=True)  # the CSRF refusal
    assert "Authorize" in client.get(f"/auth/device?user_code={code}").get_data(as_text=True)
    signed_out = client.post("/auth/logout", data={"csrf_token": token_of(client.get("/auth/logout"))})
    assert signed_out.status_code == 200
    assert client.get(f"/auth/device?user_code={code}").status_code == 302  # back to sign-in


def test_consent_page_signs_out_by_form(app):
    """The consent page's "Not you?" is a CSRF-protected POST that comes back to the same request."""
    client = app.test_client()
    code = user_code(app)
    sign_in(client)
    consent = client.get(f"/auth/device?user_code={code}")
    html = consent.get_data(as_text=True)
    assert not re.search(r'href="[^"]*logout', html)
    form = re.search(r'<form method="post" action="/auth/logout".*?</form>', html, re.DOTALL).group(0)
    next_value = re.search(r'name="next" value="([^"]+)"', form).group(1)
    out = client.post("/auth/logout", data={"csrf_token": token_of(consent), "next": next_value.replace("&amp;", "&")})
    assert out.status_code == 302 and out.headers["Location"] == f"/auth/device?user_code={code}"
    assert client.get(out.headers["Location"]).headers["Location"].startswith("/auth/login")


def test_https_form_post_without_referer_is_accepted(https_app):
    """With ``Referrer-Policy: no-referrer`` browsers send no Referer (and ``Origin: null``) with
    our own form posts; over https a valid CSRF token is enough (flask-wtf's Referer check off)."""
    client = HttpsClient(https_app)
    signed = sign_in(client, **{"Sec-Fetch-Site": "same-origin", "Origin": "null"})
    assert signed.status_code == 302, signed.get_data(as_text=True)
    assert signed.headers["Location"] == "/auth/device"


def test_https_session_cookie_is_host_only(https_app):
    """``__Host-`` prefix (RFC 6265bis §4.1.3.2): Secure, Path=/, no Domain; a sibling host or a
    plain-http page cannot plant a session (and with it a CSRF token) of its own; SameSite=Lax."""
    client = HttpsClient(https_app)
    response = sign_in(client)
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("__Host-session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "samesite"} <= attributes and "domain" not in attributes
    assert "SameSite=Lax" in cookie and "Path=/" in cookie


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "https://evil.example"}, {"Origin": "http://issuer.test"},
                                     {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}])
def test_cross_site_form_post_is_refused(https_app, headers):
    """Fetch Metadata / Origin: a form posted from another site is refused even with a token
    (e.g. one leaked from a page), before any state changes."""
    client = HttpsClient(https_app)
    form = client.get("/auth/login")
    response = client.post("/auth/login", data={"username": "alice", "password": "pw", "csrf_token": token_of(form)},
                           headers=headers)
    assert response.status_code == 403 and "another site" in response.get_data(as_text=True)
    assert_html_headers(response)


def test_https_form_post_without_token_is_refused(https_app):
    client = HttpsClient(https_app)
    client.get("/auth/login")
    response = client.post("/auth/login", data={"username": "alice", "password": "pw"},
                           headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 400 and "nothing was done" in response.get_data(as_text=True)  # the CSRF refusal


def test_a_refused_sign_in_is_announced_on_the_password_field(app):
    """WCAG 3.3.1: the development login's error is tied to the password field (aria-invalid,
    aria-describedby), not only a paragraph apart; a first visit marks nothing invalid."""
    client = app.test_client()
    form = client.get("/auth/login")
    assert "aria-invalid" not in form.get_data(as_text=True)
    refused = client.post("/auth/login", data={"username": "alice", "password": "wrong", "next": "/auth/device",
                                               "csrf_token": token_of(form)}).get_data(as_text=True)
    assert 'id="login-error"' in refused
    assert re.search(r'name="password"[^>]*aria-invalid="true" aria-describedby="login-error"', refused), refused
