"""docs/authorization.md: ``ScopePolicy.grant_scopes`` against a real directory tree and a real group source.

The tree is built with chown/chmod (numeric uids and gids, as in tests/test_posix.py), so these
tests need root (CI runs as root). Users come from a real ``StaticGroupSource`` file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest
from werkzeug.security import generate_password_hash

from scitoken_issuer.extensions import runtime
from scitoken_issuer.services.authorization import Grant, ScopePolicy
from scitoken_issuer.services.groups import StaticGroupSource
from scitoken_issuer.services.policy import Refusal
from scitoken_issuer.services.tree_index import scan_tree
from tests.conftest import make_app

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

ALICE, BOB = 20001, 20002
ANA, ATLAS, CMS = 21000, 21001, 21002

TREE = {  # scope path -> (uid, gid, mode)
    "": (0, 0, 0o755),
    "data": (0, 0, 0o755),
    "data/ana": (0, ANA, 0o755),          # ana members may read, not write
    "data/ana/out": (0, ANA, 0o775),      # ana members may write
    "data/ana/private": (BOB, BOB, 0o700),  # a corner below /data/ana that denies alice
    "data/ana/public": (0, ANA, 0o755),
    "data/cms": (0, CMS, 0o770),
}


def build_tree(base) -> str:
    root = base / "posix"
    for rel, (uid, gid, mode) in TREE.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return str(root)


def write_users(path) -> str:
    """A development users file: alice in ana/atlas, bob in cms."""
    hashed = generate_password_hash("pw", method="pbkdf2:sha256:1000")
    users = [
        {"name": "alice", "password_hash": hashed, "uid": ALICE, "gid": ALICE,
         "groups": [{"name": "alice", "gid": ALICE}, {"name": "ana", "gid": ANA}, {"name": "atlas", "gid": ATLAS}]},
        {"name": "bob", "password_hash": hashed, "uid": BOB, "gid": BOB,
         "groups": [{"name": "bob", "gid": BOB}, {"name": "cms", "gid": CMS}]},
    ]
    path.write_text(json.dumps(users))
    return str(path)


@dataclass
class Client:
    """What the scope policy reads of a client: its id, registered scope and metadata (its
    ``token_profile`` decides which verifier readings the POSIX rule checks, docs/scopes.md)."""

    client_id: str
    scope: str = ""
    client_metadata: dict = field(default_factory=dict)


@pytest.fixture
def root(tmp_path) -> str:
    return build_tree(tmp_path)


@pytest.fixture
def users(tmp_path) -> StaticGroupSource:
    return StaticGroupSource(write_users(tmp_path / "users.json"))


@pytest.fixture
def policy(root) -> ScopePolicy:
    index = scan_tree(root)
    return ScopePolicy(root, strict=True, index=lambda: index)


def test_storage_scopes_granted_in_order(policy, users):
    """Rules 2–4: group w+x on /data/ana/out, and a not-yet-created path below it."""
    grant = policy.grant_scopes(users.lookup("alice"), "storage.read:/data/ana/out storage.create:/data/ana/out "
                                "storage.create:/data/ana/out/new/file", Client("c"))
    assert isinstance(grant, Grant)
    assert grant.scope == "storage.read:/data/ana/out storage.create:/data/ana/out storage.create:/data/ana/out/new/file"


def test_first_refused_scope_is_named_with_the_reason(policy, users):
    """docs/authorization.md: any refused scope refuses the request, naming the first one and why."""
    decision = policy.grant_scopes(users.lookup("alice"), "openid storage.read:/data/ana/out "
                                   "storage.create:/data/ana storage.create:/data/cms", Client("c"))
    assert isinstance(decision, Refusal)
    assert decision.scope == "storage.create:/data/ana"
    assert "no write permission on /data/ana for user alice (group class, mode 0755" in decision.reason
    assert decision.reason.startswith("storage.create:/data/ana refused:")


def test_scitokens_write_needs_create_and_modify(policy, users):
    """docs/authorization.md: ``write:/p`` stands for create and modify; both are checked."""
    alice = users.lookup("alice")
    assert isinstance(policy.grant_scopes(alice, "write:/data/ana/out", Client("c")), Grant)
    refusal = policy.grant_scopes(alice, "read:/data/ana/public write:/data/ana/public", Client("c"))
    assert isinstance(refusal, Refusal) and refusal.scope == "write:/data/ana/public"


def test_other_class_decides_for_non_members(policy, users):
    """Rule 2: alice is not in cms, so the other bits (none) of /data/cms decide."""
    refusal = policy.grant_scopes(users.lookup("alice"), "storage.read:/data/cms", Client("c"))
    assert isinstance(refusal, Refusal)
    assert "no read and traverse (x) permission on /data/cms for user alice (other class" in refusal.reason
    assert isinstance(policy.grant_scopes(users.lookup("bob"), "storage.read:/data/cms", Client("c")), Grant)


def test_client_policy_limits_what_posix_would_allow(policy, users):
    """docs/authorization.md (client policy): the client's registered scope bounds the request before the filesystem does."""
    client = Client("reader", "openid storage.read:/data")
    alice = users.lookup("alice")
    assert isinstance(policy.grant_scopes(alice, "openid storage.read:/data/ana/out", client), Grant)
    refusal = policy.grant_scopes(alice, "storage.read:/data/ana/out storage.create:/data/ana/out", client)
    assert refusal == Refusal("storage.create:/data/ana/out",
                              "scope storage.create:/data/ana/out is not allowed for client reader")
    refusal = policy.grant_scopes(alice, "offline_access", client)
    assert isinstance(refusal, Refusal) and refusal.scope == "offline_access"


def test_client_without_registered_scope_gets_the_user_default(policy, users):
    """policy.DEFAULT_USER_CLIENT_SCOPE: POSIX still decides every storage scope."""
    grant = policy.grant_scopes(users.lookup("alice"), "openid offline_access storage.stage:/data/ana/out",
                                Client("anything"))
    assert isinstance(grant, Grant)


def test_wlcg_groups_lists_only_groups_the_client_may_see(policy, users):
    """docs/authorization.md (groups): ``wlcg.groups`` carries the user's groups, limited to the client's policy."""
    alice = users.lookup("alice")
    everything = policy.grant_scopes(alice, "wlcg.groups", Client("all", "wlcg.groups"))
    assert everything.groups == ["/alice", "/ana", "/atlas"]
    limited = policy.grant_scopes(alice, "wlcg.groups", Client("atlas-only", "wlcg.groups:/atlas wlcg.groups:/cms"))
    assert isinstance(limited, Grant) and limited.groups == ["/atlas"]
    none = policy.grant_scopes(alice, "wlcg.groups", Client("cms-only", "wlcg.groups:/cms"))
    assert isinstance(none, Grant) and none.groups == []
    refusal = policy.grant_scopes(alice, "wlcg.groups", Client("no-groups", "openid"))
    assert isinstance(refusal, Refusal) and refusal.scope == "wlcg.groups"


def test_wlcg_groups_for_a_named_group(policy, users):
    """docs/authorization.md (groups): ``wlcg.groups:/g`` is granted to members only; the token lists that group."""
    alice = users.lookup("alice")
    client = Client("c", "wlcg.groups")
    grant = policy.grant_scopes(alice, "wlcg.groups:/atlas", client)
    assert isinstance(grant, Grant) and grant.groups == ["/atlas"]
    refusal = policy.grant_scopes(alice, "wlcg.groups:/atlas wlcg.groups:/cms", client)
    assert refusal == Refusal("wlcg.groups:/cms", "alice is not a member of group /cms")
    outside = policy.grant_scopes(alice, "wlcg.groups:/atlas", Client("c", "wlcg.groups:/cms"))
    assert isinstance(outside, Refusal) and "not allowed for client c" in outside.reason


def test_strict_mode_refuses_when_a_directory_below_denies(root, users):
    """Rule 4: /data/ana is readable, but /data/ana/private below it is not (for alice)."""
    index = scan_tree(root)
    alice, client = users.lookup("alice"), Client("c")
    strict = ScopePolicy(root, strict=True, index=lambda: index).grant_scopes(alice, "storage.read:/data/ana", client)
    assert isinstance(strict, Refusal) and strict.scope == "storage.read:/data/ana"
    assert "strict mode: no read and traverse (x) permission on /data/ana/private for user alice" in strict.reason
    lax = ScopePolicy(root, strict=False, index=lambda: index).grant_scopes(alice, "storage.read:/data/ana", client)
    assert isinstance(lax, Grant)
    # the subtree that does not contain the private corner is fine in strict mode too
    assert isinstance(ScopePolicy(root, strict=True, index=lambda: index).grant_scopes(
        alice, "storage.read:/data/ana/public", client), Grant)


def test_posix_strict_setting_reaches_the_policy(tmp_path, root):
    """docs/authorization.md: ``POSIX_STRICT`` (default true) decides strict mode of the app's policy."""
    users_file = write_users(tmp_path / "users.json")
    for strict, granted in (("true", False), ("false", True)):
        app = make_app(tmp_path / strict, POSIX_PATH=root, POSIX_STRICT=strict, DEV_USERS_FILE=users_file)
        with app.app_context():
            rt = runtime()
            decision = rt.policy.grant_scopes(rt.groups.get("alice"), "storage.read:/data/ana", Client("c"))
            assert isinstance(decision, Grant) is granted, decision


def test_posix_path_unset_refuses_storage_scopes(users):
    """docs/authorization.md: without ``POSIX_PATH`` there are no storage scopes; other scopes still work."""
    policy = ScopePolicy(None, strict=True)
    alice = users.lookup("alice")
    refusal = policy.grant_scopes(alice, "openid storage.read:/data", Client("c"))
    assert refusal == Refusal("storage.read:/data",
                              "storage scopes are not available: POSIX_PATH is not configured")
    assert isinstance(policy.grant_scopes(alice, "openid wlcg.groups", Client("c")), Grant)


def test_user_without_posix_account(policy):
    """docs/authorization.md: no POSIX account, no storage or group scopes (identity-only tokens are fine)."""
    refusal = policy.grant_scopes(None, "openid storage.read:/data/ana/out", Client("c"))
    assert refusal == Refusal("storage.read:/data/ana/out", "the user has no POSIX account on this site")
    assert isinstance(policy.grant_scopes(None, "openid", Client("c")), Grant)


def test_decision_follows_the_filesystem_now(root, users):
    """docs/authorization.md: the target is checked live — a chmod takes effect on the next decision."""
    policy = ScopePolicy(root, strict=False)
    alice = users.lookup("alice")
    assert isinstance(policy.grant_scopes(alice, "storage.create:/data/ana/out", Client("c")), Grant)
    os.chmod(os.path.join(root, "data/ana/out"), 0o755)
    refusal = policy.grant_scopes(alice, "storage.create:/data/ana/out", Client("c"))
    assert isinstance(refusal, Refusal) and "no write permission on /data/ana/out" in refusal.reason
