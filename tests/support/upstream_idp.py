"""A real upstream OIDC provider (node ``oidc-provider``, tests/idp/server.mjs) and a scripted browser for it.

Fixture ``oidc_idp`` (session scope) is a factory::

    idp = oidc_idp(clients=[{"client_id": "issuer", "client_secret": "s",
                             "redirect_uris": ["http://127.0.0.1:8080/auth/callback"]}],
                   accounts=[{"login": "alice", "password": "pw", "email": "alice@example.org"}])
    idp.issuer; idp.disable("alice"); idp.enable("alice"); idp.stop()

Every IdP it started is stopped at the end of the session (or earlier with ``stop()``).
``idp_login(http, url, login, password)`` plays the browser through the IdP's login and consent pages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.support.processes import ManagedProcess, free_port, wait_until

IDP_DIR = Path(__file__).resolve().parent.parent / "idp"
DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]

# Origins of the IdPs running in this test session; idp_login stops at redirects leaving them.
_running_origins: set[str] = set()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def ensure_node_modules() -> None:
    """Install tests/idp's locked dependencies (``npm ci``) unless they are there already."""
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the upstream IdP tests need Node.js and npm")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {IDP_DIR} failed:\n{result.stdout}\n{result.stderr}")


class IdP:
    """One running test IdP: ``issuer``, ``clients``, ``accounts``; ``disable``/``enable``/``stop``."""

    def __init__(self, clients: list[dict], accounts: list[dict], log_dir: Path,
                 rotate_refresh_token: bool = True):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.clients = [{"grant_types": list(DEFAULT_GRANT_TYPES), "response_types": ["code"], **c}
                        for c in clients]
        self.accounts = accounts
        config_path = Path(log_dir) / f"idp-{self.port}.json"
        config_path.write_text(json.dumps({
            "port": self.port, "issuer": self.issuer, "clients": self.clients,
            "accounts": accounts, "rotateRefreshToken": rotate_refresh_token,
        }))
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed: the upstream IdP tests need Node.js")
        self.process = ManagedProcess(f"idp-{self.port}", [node, "server.mjs", str(config_path)],
                                      log_dir, cwd=IDP_DIR)

    def start(self) -> "IdP":
        self.process.start()
        try:
            self.process.wait_for_port(self.port)
            wait_until(self._ready, 30, f"IdP discovery at {self.issuer}")
        except BaseException:
            self.process.stop()
            raise
        _running_origins.add(_origin(self.issuer))
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok
        except requests.RequestException:
            return False

    def url(self, path: str) -> str:
        return f"{self.issuer}{path}"

    def disable(self, login: str) -> None:
        """Make ``login`` unknown to the IdP: logins fail and its refresh tokens get invalid_grant."""
        self._admin("disable", login)

    def enable(self, login: str) -> None:
        self._admin("enable", login)

    def _admin(self, action: str, login: str) -> None:
        response = requests.post(self.url(f"/__test__/{action}"), json={"login": login}, timeout=5)
        response.raise_for_status()

    def alive(self) -> bool:
        return self.process.alive()

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        _running_origins.discard(_origin(self.issuer))
        self.process.stop()


@pytest.fixture(scope="session")
def oidc_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., IdP]]:
    """Factory ``start_idp(clients=[...], accounts=[...], rotate_refresh_token=True) -> IdP``."""
    started: list[IdP] = []
    log_dir = tmp_path_factory.mktemp("upstream-idp")

    def start_idp(clients: list[dict], accounts: list[dict], rotate_refresh_token: bool = True) -> IdP:
        ensure_node_modules()
        idp = IdP(clients, accounts, log_dir, rotate_refresh_token=rotate_refresh_token)
        started.append(idp)
        return idp.start()

    try:
        yield start_idp
    finally:
        for idp in started:
            idp.stop()


class _FormParser(HTMLParser):
    """Collects forms (action, method, named inputs) and links of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""),
                               "method": attributes.get("method", "get").lower(), "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])


def idp_login(http: requests.Session, url: str, login: str, password: str, *,
              consent: bool = True, max_steps: int = 20) -> requests.Response:
    """Open ``url``, follow redirects into a running test IdP, log in and consent (or cancel).

    Returns the first response that is a redirect leaving the IdP (not followed), or else the first
    page that is not an IdP login/consent form (e.g. the IdP's 401 for a wrong password, an error page).
    """
    response = http.get(url, allow_redirects=False)
    for _ in range(max_steps):
        here = _origin(response.url)
        if response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            to_idp = _origin(target) in _running_origins
            if not to_idp and (here in _running_origins or _origin(target) != here):
                return response  # leaves the IdP, or goes elsewhere without passing through it
            response = http.get(target, allow_redirects=False)
            continue
        if here not in _running_origins or "html" not in response.headers.get("Content-Type", ""):
            return response
        parser = _FormParser()
        parser.feed(response.text)
        form = next((f for f in parser.forms if f["fields"].get("prompt") in ("login", "consent")), None)
        if form is None:
            return response
        action = urljoin(response.url, form["action"])
        fields = dict(form["fields"])
        if fields["prompt"] == "login":
            fields.update(login=login, password=password)
        elif not consent:
            abort = next((link for link in parser.links if link.endswith("/abort")), None)
            assert abort, "the IdP consent page has no cancel link"
            response = http.get(urljoin(response.url, abort), allow_redirects=False)
            continue
        response = http.post(action, data=fields, allow_redirects=False)
    raise AssertionError(f"idp_login: no way out of the IdP after {max_steps} steps, at {response.url}")
