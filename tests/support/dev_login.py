"""Browser steps against an in-process issuer with the development login (Flask test client)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The users shipped in config/dev-users.json (see config/dev-users.README.md).
DEV_PASSWORDS = {"alice": "alice-dev-password", "bob": "bob-dev-password"}


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, f"no CSRF token in page:\n{html[:2000]}"
    return match.group(1)


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636 §4.1–4.2."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in(client, username: str = "alice", password: str | None = None) -> None:
    form = client.get("/auth/login?next=/auth/device")
    assert form.status_code == 200
    response = client.post("/auth/login", data={
        "username": username, "password": password or DEV_PASSWORDS[username], "next": "/auth/device",
        "csrf_token": csrf_token(form.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)


def authorize_url(**params) -> str:
    params.setdefault("response_type", "code")
    params.setdefault("state", secrets.token_urlsafe(8))
    return "/auth/authorize?" + urlencode(params)


def approve(client, url: str):
    """Show the consent page and approve it; returns the approval response (a redirect)."""
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    return client.post(url, data={"decision": "approve", "csrf_token": csrf_token(page.get_data(as_text=True))})


def redirect_params(response, redirect_uri: str) -> dict[str, str]:
    """The query of a redirect back to ``redirect_uri``."""
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri, response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(location.query).items()}
