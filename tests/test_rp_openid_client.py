"""An independent relying party, node ``openid-client`` 6 (tests/rp), against the issuer over HTTPS,
with RS256 and ES256 access-token keys: discovery, RFC 7591 registration, code + PKCE with its own
ID-token validation (signature, ``iss`` per RFC 9207, nonce, ``alg``), userinfo, refresh,
introspection, revocation, the device grant and the ``prompt=none`` error. See docs/conformance.md.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from .support.processes import free_port

RP_DIR = Path(__file__).parent / "rp"
SCRIPT = RP_DIR / "openid_client_rp.mjs"
TIMEOUT = 60


class NodeRP:
    """The node script as a child process speaking JSON lines; stderr kept for failures."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(["node", str(SCRIPT)], cwd=RP_DIR, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def next(self, expected: str) -> dict:
        try:
            event = self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"openid-client sent nothing for {TIMEOUT}s waiting for {expected}") from None
        if event["event"] != expected:
            self.proc.kill()
            raise AssertionError(f"expected {expected}, openid-client said {event}\n{self.proc.stderr.read()}")
        return event

    def send(self, **message) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def node_rp(rp_issuer):
    if shutil.which("node") is None or not (RP_DIR / "node_modules" / "openid-client").is_dir():
        pytest.fail("node and tests/rp/node_modules are needed: run `npm ci` in tests/rp (scripts/run-tests does)")
    registered, used = free_port(), free_port()
    env = {**os.environ, "ISSUER": rp_issuer.url, "NODE_EXTRA_CA_CERTS": str(rp_issuer.ca),
           "REDIRECT_URI": f"http://127.0.0.1:{registered}/cb", "CALLBACK_URI": f"http://127.0.0.1:{used}/cb"}
    rp = NodeRP(env)
    yield rp
    rp.close()


def test_openid_client_full_relying_party(rp_issuer, node_rp):
    """openid-client accepts the issuer through every flow a site's relying party uses:
    OIDC Discovery; RFC 7591; RFC 6749 §4.1 + RFC 7636 on a loopback port other than the one
    registered (RFC 8252 §7.3); RFC 9207 ``iss``; an RS256 ID token (OIDC Core §15.1) whose
    signature it checks against the JWKS, with ``jti``/``wlcg.ver``/``email``; userinfo
    (OIDC Core §5.3); refresh (RFC 6749 §6); introspection (RFC 7662) and revocation (RFC 7009),
    after which userinfo answers an RFC 6750 ``invalid_token`` challenge that it parses; the
    device grant (RFC 8628); and ``prompt=none`` answered ``login_required`` with ``iss``."""
    rp = node_rp
    registered = rp.next("registered")
    assert registered["issuer"] == rp_issuer.url and "RS256" in registered["id_token_algs"]

    browser = rp_issuer.browser("alice")
    authorize = rp.next("authorize")
    location = browser.authorize(authorize["url"])
    assert parse_qs(urlsplit(location).query)["iss"] == [rp_issuer.url]
    rp.send(location=location)
    tokens = rp.next("tokens")
    claims = tokens["claims"]
    assert tokens["id_token_header"]["alg"] == "RS256"
    assert tokens["access_token_header"]["alg"] == rp_issuer.key_type
    assert claims["iss"] == rp_issuer.url and claims["sub"] == "alice" and claims["aud"] == [registered["client_id"]]
    assert claims["email"] == "alice@example.org" and claims["wlcg.ver"] == "1.0" and claims["jti"]
    assert tokens["has_refresh_token"]

    assert rp.next("userinfo")["userinfo"] == {"sub": "alice", "email": "alice@example.org",
                                               "preferred_username": "alice"}
    assert rp.next("refreshed") == {"event": "refreshed", "changed": True, "rotated": True}

    introspection = rp.next("introspection")
    assert introspection["before"]["active"] is True and introspection["before"]["sub"] == "alice"
    assert introspection["after"] == {"active": False}
    revoked = introspection["userinfo_after_revocation"]
    assert revoked["name"] == "WWWAuthenticateChallengeError", revoked
    assert revoked["challenges"][0]["scheme"] == "bearer"
    assert revoked["challenges"][0]["parameters"]["error"] == "invalid_token"

    device = rp.next("device")
    assert device["verification_uri"] == f"{rp_issuer.url}/auth/device" and device["interval"] == 1
    rp_issuer.browser("alice").approve_device(device["verification_uri_complete"])
    device_tokens = rp.next("device-tokens")
    assert device_tokens["id_token_header"]["alg"] == "RS256"
    assert device_tokens["claims"]["sub"] == "alice" and device_tokens["claims"]["email"] == "alice@example.org"

    silent = rp.next("authorize")
    assert parse_qs(urlsplit(silent["url"]).query)["prompt"] == ["none"]
    rp.send(location=rp_issuer.browser().authorize(silent["url"]))  # a browser with no session
    error = rp.next("silent")["error"]
    assert error["name"] == "AuthorizationResponseError" and error["error"] == "login_required", error
    rp.next("done")
