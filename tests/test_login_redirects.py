"""Sign-in and sign-out send the browser only to a path on this issuer (docs/security-web.md).

Every place ``next`` is read is tried with known open-redirect payloads: the login form (GET),
the development login (POST), the upstream IdP's callback (a real oidc-provider), and sign-out.
The Location must stay on the issuer as a browser reads it (tabs and newlines dropped, ``\\`` as
``/``, RFC 3986 §5.2 resolution), and nothing answers 500.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from scitoken_issuer.blueprints.login import DEFAULT_NEXT, safe_next
from tests.support.upstream_idp import idp_login

from .conftest import make_app
from .test_policy import write_users

ISSUER = "http://issuer.test"
OPEN_REDIRECTS = [
    "//evil.example", "///evil.example", "////evil.example/x", "/\\evil.example", "\\\\evil.example",
    "/\\/evil.example", "\\/evil.example", "/\t/evil.example", "/\n/evil.example", "/\r/evil.example",
    "/\t\\evil.example", "/%09/evil.example", "/%2F%2Fevil.example", "/%2f/evil.example", "/%5Cevil.example",
    "/%5C%5Cevil.example", "%2F%2Fevil.example", "/%252F%252Fevil.example", "https://evil.example",
    "http:evil.example", "https:/evil.example", "https:\\\\evil.example", "//evil.example@issuer.test",
    "javascript:alert(1)", "data:text/html,<script>alert(1)</script>", " //evil.example", "\x0b//evil.example",
    "/.//evil.example", "/..//evil.example", "/%2e%2e//evil.example", "/\u3000/evil.example",
    "/\uff0f/evil.example", "/auth/device\r\nSet-Cookie: session=forged", "/auth/device\nLocation: //evil.example",
    "/auth/device\x00//evil.example", "//\tevil.example", "/" + "a" * 5000,
]

def short_id(payload: str) -> str:
    return repr(payload)[1:41]


LOCAL = ["/auth/device", "/auth/device?user_code=BCDFG-HJKLM", "/auth/authorize?client_id=c&redirect_uri="
         "http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=s%2F%2Fx"]


def browser_target(location: str, base: str = f"{ISSUER}/auth/login") -> str:
    """Where a browser goes for ``location``: WHATWG URL parsing drops tab/CR/LF and reads ``\\``
    as ``/`` in http(s) URLs, then resolves against the current page."""
    cleaned = re.sub(r"[\t\r\n]", "", location).replace("\\", "/")
    return urljoin(base, cleaned)


def assert_local(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    location = response.headers.get("Location")
    if location is None:
        return
    target = urlsplit(browser_target(location))
    assert (target.scheme, target.netloc) == ("http", "issuer.test"), location
    assert not target.path.startswith("//"), location


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, ISSUER_ADDRESS=ISSUER, DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    with app.app_context():
        yield app


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.mark.parametrize("payload", OPEN_REDIRECTS, ids=short_id)
def test_safe_next_refuses(payload):
    """Each payload falls back to the default page."""
    assert safe_next(payload) == DEFAULT_NEXT


@pytest.mark.parametrize("payload", LOCAL)
def test_safe_next_keeps_local_paths(payload):
    assert safe_next(payload) == payload


@pytest.mark.parametrize("payload", OPEN_REDIRECTS, ids=short_id)
def test_login_form_next(client, payload):
    """GET /auth/login?next=...: the form carries only a local ``next``; never a 500."""
    page = client.get("/auth/login", query_string={"next": payload})
    assert page.status_code == 200
    hidden = re.search(r'name="next" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    assert hidden == DEFAULT_NEXT


@pytest.mark.parametrize("payload", OPEN_REDIRECTS, ids=short_id)
def test_development_login_post_next(client, payload):
    """POST /auth/login with a hostile ``next`` (in the form and in the query): a local Location."""
    token = form_token(client.get("/auth/login").get_data(as_text=True))
    response = client.post("/auth/login", query_string={"next": payload},
                           data={"username": "alice", "password": "pw", "next": payload, "csrf_token": token})
    assert response.status_code == 302
    assert_local(response)
    assert response.headers["Location"] == DEFAULT_NEXT


@pytest.mark.parametrize("payload", OPEN_REDIRECTS, ids=short_id)
def test_logout_next(client, payload):
    """POST /auth/logout with a hostile ``next``: a local Location (and GET shows only a form)."""
    page = client.get("/auth/logout", query_string={"next": payload})
    assert page.status_code == 200
    response = client.post("/auth/logout", data={"next": payload, "csrf_token": form_token(page.get_data(as_text=True))})
    assert response.status_code == 302
    assert_local(response)
    assert response.headers["Location"] == DEFAULT_NEXT


def test_local_next_is_kept(client):
    token = form_token(client.get("/auth/login").get_data(as_text=True))
    response = client.post("/auth/login", data={"username": "alice", "password": "pw", "next": LOCAL[1],
                                                "csrf_token": token})
    assert response.headers["Location"] == LOCAL[1]


@pytest.fixture(scope="module")
def idp(oidc_idp):
    return oidc_idp(clients=[{"client_id": "scitoken-issuer", "client_secret": "issuer-at-idp-secret-0123456789",
                              "redirect_uris": [f"{ISSUER}/auth/callback"]}],
                    accounts=[{"login": "nobody", "password": "nobody-pw", "preferred_username": "nobody"}])


@pytest.mark.e2e
@pytest.mark.parametrize("payload", OPEN_REDIRECTS + [LOCAL[1]], ids=short_id)
def test_idp_callback_next(tmp_path, idp, payload):
    """The ``next`` given to /auth/login survives the trip through a real IdP, and the callback's
    redirect is local: the payload, if local, else the default page."""
    app = make_app(tmp_path, ISSUER_ADDRESS=ISSUER, IDP_ADDRESS=idp.issuer, IDP_CLIENT_ID="scitoken-issuer",
                   IDP_CLIENT_SECRET="issuer-at-idp-secret-0123456789")
    with app.app_context():
        client = app.test_client()
        start = client.get("/auth/login", query_string={"next": payload})
        assert start.status_code == 302 and start.headers["Location"].startswith(idp.issuer)
        back = idp_login(requests.Session(), start.headers["Location"], "nobody", "nobody-pw")
        assert back.is_redirect and back.headers["Location"].startswith(f"{ISSUER}/auth/callback?")
        done = client.get(back.headers["Location"][len(ISSUER):])
        assert done.status_code == 302, done.get_data(as_text=True)[:500]
        assert_local(done)
        assert done.headers["Location"] == safe_next(payload)


class HeldBack:
    """The worker's answer to the IdP code exchange, held back until ``ready`` (a worker that is
    slow, stopped or gone): what the callback and the waiting page see of the task."""

    id = "exchange-task-1"

    def __init__(self, real):
        self.real, self.ready = real, False

    def get(self, timeout=None, **_options):
        from celery.exceptions import TimeoutError as ResultNotReady
        if not self.ready:
            raise ResultNotReady()
        return self.real.get()


@pytest.mark.e2e
def test_sign_in_waits_in_the_browser_not_in_a_web_thread(tmp_path, idp, monkeypatch):
    """docs/flows.md, flow 1: while the worker has not finished the IdP code exchange the callback
    answers a page that reloads itself (202, no script), each answer within a few seconds; the
    sign-in completes when the worker's answer comes, and is given up (503, start again) once
    EXCHANGE_TIMEOUT has passed."""
    from scitoken_issuer.blueprints import login

    app = make_app(tmp_path, ISSUER_ADDRESS=ISSUER, IDP_ADDRESS=idp.issuer, IDP_CLIENT_ID="scitoken-issuer",
                   IDP_CLIENT_SECRET="issuer-at-idp-secret-0123456789")
    held: list[HeldBack] = []
    real_dispatch = login.dispatch

    def slow_dispatch(task, *args):
        held.append(HeldBack(real_dispatch(task, *args)))  # run in process, answer held back
        return held[-1]

    monkeypatch.setattr(login, "dispatch", slow_dispatch)
    monkeypatch.setattr(app.extensions["celery"], "AsyncResult", lambda task_id: held[-1])
    monkeypatch.setattr(login, "FIRST_WAIT", 0.01)
    monkeypatch.setattr(login, "NEXT_WAIT", 0.01)

    def signed_in_at_idp(client):
        start = client.get("/auth/login", query_string={"next": LOCAL[1]})
        back = idp_login(requests.Session(), start.headers["Location"], "nobody", "nobody-pw")
        return client.get(back.headers["Location"][len(ISSUER):])

    with app.app_context():
        client = app.test_client()
        waiting = signed_in_at_idp(client)
        assert waiting.status_code == 202 and waiting.headers["Cache-Control"] == "no-store"
        page = waiting.get_data(as_text=True)
        assert '<meta http-equiv="refresh" content="2;url=/auth/callback/wait">' in page
        assert client.get("/auth/callback/wait").status_code == 202  # still waiting
        held[-1].ready = True
        done = client.get("/auth/callback/wait")
        assert done.status_code == 302 and done.headers["Location"] == LOCAL[1]
        assert client.get("/auth/callback/wait").status_code == 400  # used: nothing to wait for

        other = app.test_client()
        assert signed_in_at_idp(other).status_code == 202
        monkeypatch.setattr(login, "EXCHANGE_TIMEOUT", 0)
        given_up = other.get("/auth/callback/wait")
        assert given_up.status_code == 503 and given_up.headers["Retry-After"]
        again = other.get("/auth/callback/wait")
        assert again.status_code == 400 and "start again" in again.get_data(as_text=True)
