"""docs/authorization.md with ``USE_LDAP``: LDAP groups decide grants, and an LDAP outage never turns into one.

Against the real ``slapd`` fixture (tests/data/ldap/base.ldif) and a real tree built with chown
(needs root). Stale answers are served up to ``GROUP_CACHE_MAX_STALENESS``; beyond it the token
endpoint and the authorization endpoint answer 503 with ``Retry-After`` (docs/errors.md).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.authorization import Grant
from scitoken_issuer.services.login import SESSION_KEY, SignedIn
from scitoken_issuer.services.policy import Refusal
from tests.conftest import make_app
from tests.test_token_scopes_http import REDIRECT_URI, approve, authorize_url, pkce

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

PHYSICS, ATLAS, CMS = 5000, 5001, 5002  # gids in base.ldif
TREE = {
    "": (0, 0, 0o755),
    "data": (0, 0, 0o755),
    "data/atlas": (0, ATLAS, 0o770),      # posixGroup memberUid: alice, bob
    "data/cms": (0, CMS, 0o770),          # groupOfNames member DN: bob, carol
    "data/physics": (0, PHYSICS, 0o750),  # posixGroup memberUid alice; carol's primary gid
}
CLIENT_SCOPE = "openid offline_access wlcg.groups storage.read:/data storage.create:/data"


class Clock:
    """An injected clock for the group cache: moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def build_tree(base) -> str:
    root = base / "posix"
    for rel, (uid, gid, mode) in TREE.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        os.chown(root / rel, uid, gid)
        os.chmod(root / rel, mode)
    return str(root)


@pytest.fixture
def app(tmp_path, slapd):
    """USE_LDAP against the slapd fixture; every look-up live (TTL 0), stale answers for 60 s."""
    app = make_app(tmp_path, POSIX_PATH=build_tree(tmp_path), USE_LDAP="true", LDAP_URL=slapd.url,
                   LDAP_USER_BASE=slapd.user_base, LDAP_GROUP_BASE=slapd.group_base,
                   GROUP_CACHE_TTL="0", GROUP_CACHE_MAX_STALENESS="60")
    with app.app_context():
        runtime().groups.clock = Clock()
    yield app
    with app.app_context():
        runtime().groups.source.close()
        db.engine.dispose()


def decide(username: str, scope: str, client_scope: str = CLIENT_SCOPE) -> Grant | Refusal:
    rt = runtime()
    return rt.policy.grant_scopes(rt.groups.get(username), scope, SimpleNamespace(client_id="c", scope=client_scope))


def test_ldap_groups_decide_grants(app):
    """docs/authorization.md: posixGroup ``memberUid``, groupOfNames ``member`` DNs and the primary gid decide."""
    with app.app_context():
        assert isinstance(decide("alice", "storage.create:/data/atlas"), Grant)  # memberUid
        assert isinstance(decide("bob", "storage.create:/data/cms"), Grant)  # member DN
        assert isinstance(decide("carol", "storage.read:/data/cms storage.read:/data/physics"), Grant)  # DN case, primary gid
        refusal = decide("alice", "storage.create:/data/atlas storage.create:/data/cms")
        assert isinstance(refusal, Refusal) and refusal.scope == "storage.create:/data/cms"
        assert "for user alice (other class" in refusal.reason
        refusal = decide("bob", "storage.read:/data/physics")
        assert isinstance(refusal, Refusal) and "for user bob (other class" in refusal.reason
        grant = decide("carol", "wlcg.groups")
        assert grant.groups == ["/cms", "/lhcb", "/physics"]


def test_filter_injection_gets_nothing(app):
    """docs/authorization.md (filter values escaped): a crafted name matches no one else's entry or groups."""
    with app.app_context():
        for name in ("alice)(uid=*", "*)(|(uid=*", "al*"):
            refusal = decide(name, "storage.read:/data/atlas")
            assert refusal == Refusal("storage.read:/data/atlas", "the user has no POSIX account on this site"), name
        # the real entry whose uid looks like an injection has only its own groups
        eve = decide("eve)(uid=*", "storage.read:/data/atlas")
        assert isinstance(eve, Refusal) and "(other class" in eve.reason
        assert decide("eve)(uid=*", "wlcg.groups").groups == ["/evegroup"]


def sign_in_as(client, username: str) -> None:
    """A signed-in browser session (with USE_LDAP there is no development login to drive)."""
    with client.session_transaction() as session:
        session[SESSION_KEY] = SignedIn(username, None, int(time.time()), {}).to_session()


def test_ldap_outage_bounded_staleness_then_503(app, slapd):
    """docs/errors.md: while LDAP is down a cached answer is served up to GROUP_CACHE_MAX_STALENESS,
    then the token and authorization endpoints answer 503 with Retry-After — never a grant —
    and the refresh token presented then still works once LDAP is back."""
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "portal", "grant_types": ["authorization_code", "refresh_token"],
             "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "scope": CLIENT_SCOPE},
            admin=True, source="admin")
        db.session.commit()
        client_id = registration.client.client_id
        clock = runtime().groups.clock
    oauth = SimpleNamespace(client_id=client_id)
    client = app.test_client()
    sign_in_as(client, "alice")
    verifier, challenge = pkce()
    _, approved = approve(client, authorize_url(oauth, "offline_access storage.create:/data/atlas", challenge))
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    tokens = client.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                              "redirect_uri": REDIRECT_URI, "code_verifier": verifier}).get_json()
    refresh_token = tokens["refresh_token"]

    def refresh(token: str):
        return client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": client_id,
                                                "refresh_token": token})

    slapd.stop()
    clock.now += 30  # within the bounded staleness: the cached answer is served
    within = refresh(refresh_token)
    assert within.status_code == 200, within.get_data(as_text=True)
    assert "storage.create:/data/atlas" in within.get_json()["scope"].split()
    refresh_token = within.get_json()["refresh_token"]

    clock.now += 120  # beyond it: 503, no token, the refresh token is not spent
    down = refresh(refresh_token)
    assert down.status_code == 503
    assert down.headers["Retry-After"].isdigit()
    body = down.get_json()
    assert body["error"] == "temporarily_unavailable" and "access_token" not in body
    assert "LDAP" in body["error_description"]
    page = client.get(authorize_url(oauth, "storage.create:/data/atlas", challenge))
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert "text/html" in page.headers["Content-Type"]

    slapd.start()
    back = refresh(refresh_token)
    assert back.status_code == 200, back.get_data(as_text=True)
    assert "storage.create:/data/atlas" in back.get_json()["scope"].split()
    assert client.get(authorize_url(oauth, "storage.create:/data/atlas", challenge)).status_code == 200

