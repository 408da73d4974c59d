"""docs/tokens.md: the access tokens of every grant — authorization code (RFC 6749 §4.1), device
code (RFC 8628), refresh (RFC 6749 §6), client credentials (RFC 6749 §4.4) and token exchange
(RFC 8693) — pass the verifiers storage runs, for both ``KEY_TYPE`` values and both token profiles:
scitokens-cpp's enforcer (``scitokens-test-access``) for both profiles and the Python
``scitokens.Enforcer`` for SciTokens 2.0 tokens, with the keys fetched from the issuer over HTTPS.

(tests/test_verifiers.py checks client-credentials tokens in detail, tests/test_verifier_scopes.py
the device flow against the kernel's answer; this file holds every grant to the same verifiers.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jwt as pyjwt
import pytest

from scitoken_issuer.extensions import db, runtime

from .conftest import basic_auth, make_app
from .support.https import serve_https
from .support.processes import free_port
from .support.user_flows import DEVICE_GRANT, REDIRECT_URI, code_tokens, device_tokens, refresh, sign_in
from .support.tls import bundle_with, make_tls, trust_for_verifiers
from .test_policy import build_tree, write_users
from .test_verifiers import _cpp_tool, run_cpp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

SITE = "https://storage.example.org"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
USER_SCOPE = "openid offline_access wlcg.groups storage.read:/data/ana/out storage.modify:/data/ana/out"
GRANTS = ("code", "device", "refresh", "client_credentials", "token_exchange")


@dataclass
class Issued:
    url: str
    bundle: Path
    tokens: dict  # (profile, grant) -> access token


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def issued(request):
    """The issuer over HTTPS (no ``AUDIENCE``: each profile's any-audience default) over a real
    tree where alice's group may write /data/ana/out, and one access token per grant and profile."""
    base = Path(tempfile.mkdtemp(prefix="verifier-grants-", dir="/tmp"))
    ca, cert, key = make_tls(base)
    bundle = bundle_with(ca, base / "bundle.pem")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    app = make_app(base, ISSUER_ADDRESS=url, KEY_TYPE=request.param, POSIX_PATH=build_tree(base),
                   DEV_USERS_FILE=write_users(base / "users.json"))
    client = app.test_client()

    def register(profile: str, **metadata) -> tuple[str, str | None]:
        with app.app_context():
            registration = runtime().clients.register({"token_profile": profile, **metadata}, admin=True,
                                                      source="admin")
            db.session.commit()
            return registration.client.client_id, registration.client_secret

    tokens = {}
    sign_in(client, "alice", "pw")
    for profile in ("wlcg", "scitokens"):
        user = register(profile, client_name="analysis tool", token_endpoint_auth_method="none", scope=USER_SCOPE,
                        grant_types=["authorization_code", "refresh_token", DEVICE_GRANT],
                        redirect_uris=[REDIRECT_URI])
        service = register(profile, grant_types=["client_credentials"], scope="storage.read:/data compute.read")
        manager = register(profile, grant_types=[EXCHANGE], scope="storage.read:/data")
        code = code_tokens(client, user[0], USER_SCOPE)
        tokens[profile, "code"] = code["access_token"]
        tokens[profile, "device"] = device_tokens(client, user[0], USER_SCOPE)["access_token"]
        refreshed = refresh(client, user[0], code["refresh_token"])
        assert refreshed.status_code == 200, refreshed.get_json()
        tokens[profile, "refresh"] = refreshed.get_json()["access_token"]
        own = client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=basic_auth(*service))
        assert own.status_code == 200, own.get_json()
        tokens[profile, "client_credentials"] = own.get_json()["access_token"]
        exchanged = client.post("/auth/token", headers=basic_auth(*manager), data={
            "grant_type": EXCHANGE, "subject_token": code["access_token"], "subject_token_type": ACCESS,
            "scope": "storage.read:/data/ana/out"})
        assert exchanged.status_code == 200, exchanged.get_json()
        tokens[profile, "token_exchange"] = exchanged.get_json()["access_token"]
    try:
        with serve_https(app, port, cert, key, name="https-issuer"):
            yield Issued(url, bundle, tokens)
    finally:
        with app.app_context():
            db.engine.dispose()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def trust(issued, tmp_path, monkeypatch):
    """Trust the test CA; a fresh key cache for the Python library."""
    return trust_for_verifiers(issued.bundle, tmp_path / "cache", monkeypatch)


def _user_grant(grant: str) -> bool:
    return grant in ("code", "device", "refresh")


@pytest.mark.parametrize("grant", GRANTS)
@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_scitokens_cpp_reads_every_grant(issued, trust, tmp_path, profile, grant):
    """docs/tokens.md "Audience", docs/scopes.md "The verb table": scitokens-cpp configured with
    the site's audience accepts the profile's any-audience default and grants what the token's
    scopes say: read under the granted path, write (modify) only where modify was granted, nothing
    beside it; ``compute.read`` as HTCondor's ``condor:/READ``."""
    tool = _cpp_tool("scitokens-test-access")
    token = issued.tokens[profile, grant]

    def allows(verb: str, path: str) -> bool:
        done = run_cpp([tool, token, issued.url, SITE, verb, path], trust, tmp_path)
        return done.returncode == 0

    assert allows("read", "/data/ana/out/f")
    assert allows("write", "/data/ana/out/f") is _user_grant(grant)
    if grant == "client_credentials":  # storage.read:/data compute.read
        assert allows("read", "/data/cms/f")
        # scitokens-cpp translates compute.* only in WLCG tokens (docs/scopes.md, "Verifier
        # behaviour worth knowing"): in a SciTokens token compute.read is inert for HTCondor
        assert allows("condor", "/READ") is (profile == "wlcg")
        assert not allows("condor", "/WRITE")
    else:
        assert not allows("read", "/data/ana/f")
        assert not allows("read", "/data/cms/f")
        assert not allows("condor", "/READ")


@pytest.mark.parametrize("grant", GRANTS)
def test_python_enforcer_reads_every_grant(issued, trust, grant):
    """docs/tokens.md "Audience": the Python ``scitokens.Enforcer`` with the site's audience
    accepts a SciTokens 2.0 token of every grant (``aud: ANY``, ``act``, ``sid`` and
    ``client_id`` claims alike) and grants read under the path, write only where modify was
    granted, and nothing in a sibling whose name extends the path (``/data/ana/outer``)."""
    import scitokens

    token = scitokens.SciToken.deserialize(issued.tokens["scitokens", grant])
    enforcer = scitokens.Enforcer(issued.url, audience=SITE)
    assert enforcer.test(token, "read", "/data/ana/out/f"), enforcer.last_failure
    assert enforcer.test(token, "write", "/data/ana/out/f") is _user_grant(grant)
    if grant != "client_credentials":
        assert not enforcer.test(token, "read", "/data/ana/outer/f")
        assert not enforcer.test(token, "read", "/data/ana/f")


# -- key rotation as verifiers with a cached key set meet it (docs/tokens.md, "Access tokens") ---

class CountJwksFetches:
    """WSGI middleware counting requests for the key set."""

    def __init__(self, app):
        self.app, self.fetches = app, 0

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/auth/certs":
            self.fetches += 1
        return self.app(environ, start_response)


@pytest.mark.parametrize("key_type", ["RS256", "ES256"])
def test_cached_key_set_verifies_across_a_rotation(tmp_path, monkeypatch, key_type):
    """docs/tokens.md "Access tokens", RFC 7517: a verifier that fetched the key set once keeps
    verifying across a scheduled rotation without fetching again (the next key was published
    ``KEY_PUBLISH_HOURS`` before it signs), and tokens of the retired key keep verifying. A key
    rotated ``--immediately`` is not in a cached set: scitokens-cpp does not fetch again on an
    unknown ``kid`` (it refreshes its cache on a timer, 10 minutes by default) and refuses the
    new key's tokens until then, while the Python library fetches the new key at once."""
    import scitokens

    tool = _cpp_tool("scitokens-test-access")
    ca, cert, key = make_tls(tmp_path)
    bundle = trust_for_verifiers(bundle_with(ca, tmp_path / "bundle.pem"), tmp_path / "cache", monkeypatch)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    app = make_app(tmp_path, ISSUER_ADDRESS=url, KEY_TYPE=key_type)
    counter = CountJwksFetches(app.wsgi_app)
    app.wsgi_app = counter
    with app.app_context():
        registration = runtime().clients.register({"grant_types": ["client_credentials"], "scope": "storage.read:/data",
                                                   "token_profile": "scitokens"}, admin=True, source="admin")
        credentials = basic_auth(registration.client.client_id, registration.client_secret)
        db.session.commit()
        keys = runtime().keys
    now = [float(int(time.time()))]
    keys.clock = lambda: now[0]
    client = app.test_client()

    def token() -> str:
        answer = client.post("/auth/token", data={"grant_type": "client_credentials"},
                             headers=credentials)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["access_token"]

    def cpp_allows(access_token: str, cache: Path) -> bool:
        done = run_cpp([tool, access_token, url, SITE, "read", "/data/x"], bundle, cache)
        return done.returncode == 0

    def kid(access_token: str) -> str:
        return pyjwt.get_unverified_header(access_token)["kid"]

    try:
        with serve_https(app, port, cert, key, name="https-issuer"):
            first = token()
            with app.app_context():
                keys.rotate()  # the next key is published now and signs after KEY_PUBLISH_HOURS
                db.session.commit()
            assert cpp_allows(first, tmp_path)  # the verifier fetches the key set: both keys
            fetched = counter.fetches
            now[0] += 24 * 3600 + 1
            second = token()
            assert kid(second) != kid(first)
            assert cpp_allows(second, tmp_path)  # signed by the next key: in the cached set
            assert cpp_allows(first, tmp_path)  # the retired key still verifies its tokens
            assert counter.fetches == fetched  # ... all without fetching the key set again
            python = scitokens.Enforcer(url, audience=SITE)
            for each in (first, second):
                assert python.test(scitokens.SciToken.deserialize(each), "read", "/data/x"), python.last_failure

            with app.app_context():
                keys.rotate(immediately=True)
                db.session.commit()
            third = token()
            assert kid(third) not in (kid(first), kid(second))
            assert not cpp_allows(third, tmp_path)  # the cached set has no such kid, and no refetch
            fresh = tmp_path / "fresh"
            fresh.mkdir()
            assert cpp_allows(third, fresh)  # a verifier fetching now has it
            assert python.test(scitokens.SciToken.deserialize(third), "read", "/data/x"), python.last_failure
            # the key it replaced is retired, not withdrawn: its tokens verify until they expire
            assert kid(second) in {k["kid"] for k in client.get("/auth/certs").get_json()["keys"]}
            assert cpp_allows(second, fresh)
    finally:
        with app.app_context():
            db.engine.dispose()
