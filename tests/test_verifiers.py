"""docs/tokens.md: tokens pass the real verifiers storage services use — the Python ``scitokens`` library
(``SciToken.deserialize``, ``Enforcer``) and scitokens-cpp (``scitokens-verify``,
``scitokens-test-access``) — fetching the keys from a real HTTPS issuer (RFC 8414 discovery,
RFC 7517 JWKS), for RS256 and ES256 keys and both token profiles."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scitoken_issuer.extensions import db, runtime

from .conftest import make_app
from .support.https import serve_https
from .support.processes import free_port
from .support.tls import SYSTEM_BUNDLE, bundle_with, make_tls, trust_for_verifiers

AUDIENCE = "https://storage.example.org"
CLIENT_SCOPE = "storage.read:/data storage.create:/data/out storage.modify:/data/out"


@dataclass
class HttpsIssuer:
    url: str
    ca: Path
    key_type: str
    clients: dict  # profile -> (client_id, secret)

    def token(self, profile: str, **form) -> str:
        """A client-credentials token; ``audience=None`` sends no ``audience`` (the default)."""
        client_id, secret = self.clients[profile]
        form.setdefault("grant_type", "client_credentials")
        form.setdefault("audience", AUDIENCE)
        response = requests.post(f"{self.url}/auth/token", data=form, auth=(client_id, secret),
                                 verify=str(self.ca), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def https_issuer(request, tmp_path_factory):
    """The issuer app served over HTTPS on 127.0.0.1 (werkzeug, threaded), one client per profile."""
    root = tmp_path_factory.mktemp(f"https-{request.param}")
    ca, cert, key = make_tls(root)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    app = make_app(root, ISSUER_ADDRESS=url, KEY_TYPE=request.param)
    clients = {}
    with app.app_context():
        for profile in ("wlcg", "scitokens"):
            registration = runtime().clients.register(
                {"client_name": f"storage test {profile}", "grant_types": ["client_credentials"],
                 "scope": CLIENT_SCOPE, "token_profile": profile}, admin=True, source="admin")
            clients[profile] = (registration.client.client_id, registration.client_secret)
        db.session.commit()
    try:
        with serve_https(app, port, cert, key, name="https-issuer"):
            yield HttpsIssuer(url, ca, request.param, clients)
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def trust(https_issuer, tmp_path, monkeypatch):
    """Trust the test CA (requests, ssl) and give the scitokens key cache a fresh home."""
    return trust_for_verifiers(bundle_with(https_issuer.ca, tmp_path / "bundle.pem"), tmp_path / "cache", monkeypatch)


def test_https_discovery_points_at_the_https_jwks(https_issuer, trust):
    """RFC 8414 §3: the metadata the verifiers read first names this issuer and its JWKS."""
    meta = requests.get(f"{https_issuer.url}/.well-known/openid-configuration", timeout=30).json()
    assert meta["issuer"] == https_issuer.url
    assert meta["jwks_uri"] == f"{https_issuer.url}/auth/certs"
    keys = requests.get(meta["jwks_uri"], timeout=30).json()["keys"]
    assert {k["alg"] for k in keys} == {https_issuer.key_type, "RS256"}  # RS256 signs ID tokens


@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_python_scitokens_deserialize(https_issuer, trust, profile):
    """docs/tokens.md: ``SciToken.deserialize`` fetches the keys from the issuer and accepts the token."""
    import scitokens

    token = https_issuer.token(profile)
    parsed = scitokens.SciToken.deserialize(token, audience=AUDIENCE)
    assert parsed["iss"] == https_issuer.url
    assert parsed["aud"] == AUDIENCE
    if profile == "scitokens":
        assert parsed["ver"] == "scitoken:2.0"
    else:
        assert parsed["wlcg.ver"] == "1.0"


def test_python_scitokens_rejects_other_audience(https_issuer, trust):
    """docs/tokens.md: ``aud`` is enforced by the verifier."""
    import scitokens

    token = scitokens.SciToken.deserialize(https_issuer.token("scitokens"))
    enforcer = scitokens.Enforcer(https_issuer.url, audience="https://elsewhere.example.org")
    assert not enforcer.test(token, "read", "/data/x")


def test_python_scitokens_enforcer_scitokens_profile(https_issuer, trust):
    """docs/tokens.md, SciTokens 2.0: the ``Enforcer`` grants read under /data, write only under /data/out.

    (The Python ``Enforcer`` is for SciTokens tokens only: it has no storage.* mapping and checks a
    token without ``ver: scitoken:2.0`` against the closed SciTokens 1.0 claim set, so WLCG-profile
    tokens are checked with scitokens-cpp's enforcer below, which storage services use for them.)"""
    import scitokens

    token = scitokens.SciToken.deserialize(https_issuer.token("scitokens"), audience=AUDIENCE)
    enforcer = scitokens.Enforcer(https_issuer.url, audience=AUDIENCE)
    assert enforcer.test(token, "read", "/data/x")
    assert not enforcer.test(token, "write", "/data/x")
    assert enforcer.test(token, "write", "/data/out/file")
    assert not enforcer.test(token, "read", "/etc/passwd")


def test_python_scitokens_narrowed_scope(https_issuer, trust):
    """docs/tokens.md "scope": a token asked for a narrower path grants only that path."""
    import scitokens

    token = scitokens.SciToken.deserialize(https_issuer.token("scitokens", scope="storage.read:/data/run1"),
                                           audience=AUDIENCE)
    enforcer = scitokens.Enforcer(https_issuer.url, audience=AUDIENCE)
    assert enforcer.test(token, "read", "/data/run1/f")
    assert not enforcer.test(token, "read", "/data/run2/f")


# -- scitokens-cpp ------------------------------------------------------------------------------

def _cpp_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (Debian package scitokens-cpp) is not installed")
    if shutil.which("unshare") is None or not SYSTEM_BUNDLE.exists():
        pytest.skip("scitokens-cpp trusts only the system CA bundle; needs unshare and " + str(SYSTEM_BUNDLE))
    return path


def run_cpp(argv: list[str], bundle: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a scitokens-cpp tool in a private mount namespace where the system CA bundle also holds
    our test CA (libcurl in scitokens-cpp reads only the system bundle), with its own key cache."""
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(bundle), str(SYSTEM_BUNDLE), *argv],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "XDG_CACHE_HOME": str(tmp_path / "cpp-cache")})
    if done.returncode and "mount" in done.stderr and ("permission" in done.stderr.lower()
                                                       or "not permitted" in done.stderr.lower()):
        pytest.skip(f"cannot bind-mount a CA bundle here: {done.stderr.strip()}")
    return done


@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_scitokens_cpp_verify(https_issuer, trust, tmp_path, profile):
    """docs/tokens.md: ``scitokens-verify`` (scitokens-cpp) fetches the keys and accepts the token."""
    tool = _cpp_tool("scitokens-verify")
    done = run_cpp([tool, https_issuer.token(profile)], trust, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scitokens_cpp_rejects_tampered_token(https_issuer, trust, tmp_path):
    """RFC 7515 §5.2: a token whose payload was changed fails scitokens-cpp verification."""
    import base64
    import json

    tool = _cpp_tool("scitokens-verify")
    header, payload, signature = https_issuer.token("scitokens").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "read:/ write:/"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    done = run_cpp([tool, f"{header}.{forged}.{signature}"], trust, tmp_path)
    assert done.returncode != 0


def test_scitokens_cpp_enforcer(https_issuer, trust, tmp_path):
    """docs/tokens.md: scitokens-cpp's enforcer (``scitokens-test-access``) allows read under /data and
    refuses write there for a SciTokens 2.0 token."""
    tool = _cpp_tool("scitokens-test-access")
    token = https_issuer.token("scitokens")
    allowed = run_cpp([tool, token, https_issuer.url, AUDIENCE, "read", "/data/x"], trust, tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    refused = run_cpp([tool, token, https_issuer.url, AUDIENCE, "write", "/data/x"], trust, tmp_path)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    out = run_cpp([tool, token, https_issuer.url, AUDIENCE, "write", "/data/out/f"], trust, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scitokens_cpp_enforcer_wlcg(https_issuer, trust, tmp_path):
    """docs/tokens.md: scitokens-cpp's enforcer accepts a WLCG 1.0 token's storage.read scope."""
    tool = _cpp_tool("scitokens-test-access")
    token = https_issuer.token("wlcg")
    allowed = run_cpp([tool, token, https_issuer.url, AUDIENCE, "read", "/data/x"], trust, tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    refused = run_cpp([tool, token, https_issuer.url, AUDIENCE, "create", "/data/x"], trust, tmp_path)
    assert refused.returncode != 0, refused.stdout + refused.stderr


# -- the default audience per profile (docs/tokens.md, "Audience") ------------------------------
# The issuer here sets no AUDIENCE. A site's verifier is configured with its own audience and
# must accept a token whose ``aud`` is the profile's "any" value: scitokens-cpp honours
# https://wlcg.cern.ch/jwt/v1/any only in WLCG tokens and ANY only in SciTokens 2.0 tokens.

def test_python_enforcer_accepts_default_audience_scitokens(https_issuer, trust):
    """docs/tokens.md "Audience": a SciTokens-profile token asked with no ``audience`` carries
    ``ANY``, which ``Enforcer(audience=<site>)`` accepts (it refused the WLCG URI it had before).

    (The Python library has no WLCG profile: it knows neither ``storage.*`` scopes nor the WLCG
    "any" URI, so WLCG tokens are checked with scitokens-cpp below.)"""
    import scitokens

    token = scitokens.SciToken.deserialize(https_issuer.token("scitokens", audience=None))
    assert token["aud"] == "ANY"
    enforcer = scitokens.Enforcer(https_issuer.url, audience=AUDIENCE)
    assert enforcer.test(token, "read", "/data/x"), enforcer.last_failure
    assert not enforcer.test(token, "write", "/data/x")


@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_scitokens_cpp_accepts_default_audience(https_issuer, trust, tmp_path, profile):
    """docs/tokens.md "Audience": ``scitokens-test-access`` with the site's audience accepts a
    token of either profile asked with no ``audience`` (scitokens-cpp's per-profile "any")."""
    tool = _cpp_tool("scitokens-test-access")
    token = https_issuer.token(profile, audience=None)
    allowed = run_cpp([tool, token, https_issuer.url, AUDIENCE, "read", "/data/x"], trust, tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_narrowed_audience_is_refused_elsewhere(https_issuer, trust, tmp_path, profile):
    """docs/tokens.md "Audience": a token narrowed to another service is refused by a verifier
    of this one — scitokens-cpp for both profiles, the Python ``Enforcer`` for SciTokens — and
    accepted by the service it names."""
    tool = _cpp_tool("scitokens-test-access")
    token = https_issuer.token(profile, audience="https://other.example.org")
    refused = run_cpp([tool, token, https_issuer.url, AUDIENCE, "read", "/data/x"], trust, tmp_path)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    named = run_cpp([tool, token, https_issuer.url, "https://other.example.org", "read", "/data/x"], trust, tmp_path)
    assert named.returncode == 0, named.stdout + named.stderr
    if profile == "scitokens":
        import scitokens

        parsed = scitokens.SciToken.deserialize(token)
        assert not scitokens.Enforcer(https_issuer.url, audience=AUDIENCE).test(parsed, "read", "/data/x")
        assert scitokens.Enforcer(https_issuer.url, audience="https://other.example.org").test(
            parsed, "read", "/data/x")
