"""The issuer as relying-party libraries meet it: served over HTTPS (a throwaway CA) with the
development login, and a scripted browser that signs in, consents and approves device codes.

``rp_issuer`` is module-scoped and parametrized over ``KEY_TYPE`` (RS256, ES256); the client
libraries under test (node openid-client, Python pyoidc) do everything a client does, the
browser here does only what a person does.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from scitoken_issuer.extensions import db

from ..conftest import make_app
from ..test_verifiers import SYSTEM_BUNDLE, make_tls
from .dev_login import DEV_PASSWORDS
from .https import serve_https
from .processes import free_port

_FORM = re.compile(r'<form method="post" action="([^"]*)">(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass
class RpIssuer:
    url: str
    ca: Path
    bundle: Path  # the system CAs plus the test CA
    key_type: str
    app: object

    def browser(self, username: str = "alice") -> "Browser":
        return Browser(self, username)


class Browser:
    """A person with a browser: follows the issuer's pages, never the client's redirect."""

    def __init__(self, issuer: RpIssuer, username: str):
        self.issuer = issuer
        self.username = username
        self.http = requests.Session()
        self.http.verify = str(issuer.ca)
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE (preset here) would win over ``verify``

    def _on_issuer(self, url: str) -> bool:
        return url.startswith(self.issuer.url + "/")

    def _submit(self, page: requests.Response, **fields) -> requests.Response:
        """Post the page's form (hidden fields, CSRF token) with ``fields``; same-origin Referer."""
        action, body = _FORM.search(page.text).groups()
        data = {name: html.unescape(value) for name, value in _HIDDEN.findall(body)}
        data.update(fields)
        return self.http.post(urljoin(page.url, html.unescape(action)), data=data, allow_redirects=False,
                              headers={"Referer": page.url})

    def _signed_in(self, response: requests.Response) -> requests.Response:
        """If ``response`` sends to the sign-in page, sign in and come back to the page it guards."""
        location = urljoin(response.url, response.headers.get("Location", ""))
        if response.status_code != 302 or urlsplit(location).path != "/auth/login":
            return response
        form = self.http.get(location)
        assert form.status_code == 200, form.text[:1000]
        back = self._submit(form, username=self.username, password=DEV_PASSWORDS[self.username])
        assert back.status_code == 302, back.text[:1000]
        return self.http.get(urljoin(back.url, back.headers["Location"]), allow_redirects=False)

    def authorize(self, url: str, decision: str = "approve") -> str:
        """Open the client's authorization URL; sign in and decide if asked. Returns the redirect
        back to the client (its Location), which the browser does not follow."""
        assert self._on_issuer(url), url
        response = self._signed_in(self.http.get(url, allow_redirects=False))
        if response.status_code == 200:  # the consent page
            response = self._submit(response, decision=decision)
        assert response.status_code == 302, response.text[:1000]
        location = urljoin(response.url, response.headers["Location"])
        assert not self._on_issuer(location), location
        return location

    def approve_device(self, verification_uri_complete: str) -> None:
        """RFC 8628 §3.3: follow the complete verification URI, sign in, approve."""
        page = self._signed_in(self.http.get(verification_uri_complete, allow_redirects=False))
        assert page.status_code == 200 and 'value="approve"' in page.text, page.text[:1000]
        done = self._submit(page, decision="approve")
        assert done.status_code == 200, done.text[:1000]


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def rp_issuer(request, tmp_path_factory) -> Iterator[RpIssuer]:
    """The issuer on https://127.0.0.1:PORT (werkzeug, threaded) with ``KEY_TYPE`` = the param."""
    root = tmp_path_factory.mktemp(f"rp-{request.param}")
    ca, cert, key = make_tls(root)
    bundle = root / "bundle.pem"
    bundle.write_bytes((SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b"") + b"\n" + ca.read_bytes())
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    app = make_app(root, ISSUER_ADDRESS=url, KEY_TYPE=request.param, DEVICE_POLL_INTERVAL=1)
    try:
        with serve_https(app, port, cert, key, name="rp-issuer"):
            yield RpIssuer(url, ca, bundle, request.param, app)
    finally:
        with app.app_context():
            db.engine.dispose()
