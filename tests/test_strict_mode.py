"""Strict mode covers files and the sticky bit (docs/authorization.md, rule 4).

A recursive scope is refused when an entry below it — a file as much as a directory — denies the
user what the scope grants, and ``modify`` is refused over a sticky directory holding entries of
other users (the kernel lets only an entry's owner or the directory's owner delete or rename it).
Each case is checked through ``ScopePolicy.grant_scopes`` with the tree index and with the live
walk (no index), through ``check-scope``, and through a real authorization request.

The tree is built with chown to numeric uids (as in tests/test_posix.py), so these tests need root.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.authorization import Grant, ScopePolicy
from scitoken_issuer.services.policy import Refusal
from scitoken_issuer.services.tree_index import TreeIndex, scan_tree
from scitoken_issuer.services.tree_store import TreeIndexMissing, TreeIndexStore
from scitoken_issuer.services.users import PosixUser
from tests.conftest import make_app
from tests.test_policy import Client, write_users

#: clients whose tokens are in each profile (docs/scopes.md: what the POSIX rule checks for a verb
#: depends on how verifiers read it in that profile's token)
SCITOKENS = Client("c", client_metadata={"token_profile": "scitokens"})
WLCG = Client("c", client_metadata={"token_profile": "wlcg"})
from tests.test_posix import acl_xattr
from tests.test_token_scopes_http import REDIRECT_URI, approve, authorize_url, callback_params, pkce, sign_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

ALICE_UID, BOB_UID, CAROL_UID, ANA = 20001, 20002, 20003, 21000
ALICE = PosixUser("alice", ALICE_UID, ALICE_UID, frozenset({ALICE_UID, ANA}))
BOB = PosixUser("bob", BOB_UID, BOB_UID, frozenset({BOB_UID}))
CAROL = PosixUser("carol", CAROL_UID, CAROL_UID, frozenset({CAROL_UID, ANA}))

TREE = {  # scope path -> (uid, gid, mode); a trailing "/" marks a directory
    "/": (0, 0, 0o755),
    "data/": (0, 0, 0o755),
    "data/physics/": (0, ANA, 0o755),         # ana may read the directory ...
    "data/physics/public.txt": (0, ANA, 0o644),
    "data/physics/secret.txt": (0, 0, 0o600),  # ... but not this file below it
    "data/open/": (0, ANA, 0o755),
    "data/open/public.txt": (0, ANA, 0o644),
    "data/sticky/": (0, 0, 0o1777),            # a /tmp-like drop box
    "data/sticky/alice.txt": (ALICE_UID, ALICE_UID, 0o666),
    "data/sticky/bob.txt": (BOB_UID, BOB_UID, 0o666),  # writable, yet only bob (or root, the owner) may delete it
    "data/mine/": (0, 0, 0o1777),
    "data/mine/alice.txt": (ALICE_UID, ALICE_UID, 0o644),
    "data/carols/": (CAROL_UID, ANA, 0o1775),  # sticky, owned by carol: carol may delete anything in it
    "data/carols/alice.txt": (ALICE_UID, ANA, 0o664),
    "data/shared/": (0, ANA, 0o2775),
    "data/shared/alice.txt": (ALICE_UID, ANA, 0o664),
    "data/shared/readonly.txt": (0, ANA, 0o644),  # ana may create beside it, not modify it
    "data/acl/": (0, ANA, 0o775),
    "data/acl/named.txt": (0, ANA, 0o664),     # + an ACL taking everything from alice
}


def build_strict_tree(base) -> str:
    root = base / "strict"
    for rel, (uid, gid, mode) in TREE.items():
        path = root / rel.rstrip("/") if rel != "/" else root
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_text("x")
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    os.setxattr(root / "data/acl/named.txt", "system.posix_acl_access",
                acl_xattr((1, 6, 0xFFFFFFFF), (2, 0, ALICE_UID), (4, 6, 0xFFFFFFFF), (16, 6, 0xFFFFFFFF),
                          (32, 4, 0xFFFFFFFF)))
    return str(root)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return build_strict_tree(tmp_path_factory.mktemp("strict"))


@pytest.fixture(params=["index", "live"])
def policy(request, root) -> ScopePolicy:
    """The strict policy with the tree index, and without one (the live walk): same answers."""
    if request.param == "index":
        index = scan_tree(root)
        return ScopePolicy(root, strict=True, index=lambda: index)
    return ScopePolicy(root, strict=True)


def refused(decision, scope: str, *needles: str) -> bool:
    assert isinstance(decision, Refusal), decision
    assert decision.scope == scope and "strict mode" in decision.reason, decision.reason
    for needle in needles:
        assert needle in decision.reason, decision.reason
    return True


def test_a_private_file_below_refuses_recursive_read(policy):
    """Rule 4: ``storage.read:/data/physics`` would let alice read root's 0600 secret.txt."""
    decision = policy.grant_scopes(ALICE, "storage.read:/data/physics", Client("c"))
    assert refused(decision, "storage.read:/data/physics",
                   "no read permission on /data/physics/secret.txt for user alice (other class, mode 0600")
    for scope in ("storage.stage:/data/physics", "read:/data/physics"):
        assert isinstance(policy.grant_scopes(ALICE, scope, Client("c")), Refusal)
    assert isinstance(policy.grant_scopes(ALICE, "storage.read:/data/physics/public.txt", Client("c")), Grant)
    assert isinstance(policy.grant_scopes(ALICE, "storage.read:/data/open", Client("c")), Grant)


def test_files_do_not_limit_create(policy):
    """``create`` makes new entries only: read-only files beside them do not refuse it — in a
    SciTokens token, where it is written ``create``. In a WLCG token scitokens-cpp also reads
    ``storage.create`` as ``write``, so there it must pass as modify too (docs/scopes.md)."""
    assert isinstance(policy.grant_scopes(ALICE, "storage.create:/data/shared", SCITOKENS), Grant)
    assert isinstance(policy.grant_scopes(ALICE, "storage.create:/data/shared", WLCG), Refusal)
    assert isinstance(policy.grant_scopes(ALICE, "storage.read:/data/shared", Client("c")), Grant)


def test_a_read_only_file_below_refuses_modify(policy):
    """Rule 4: modify needs w on every file below; root's 0644 file in a group-writable directory."""
    decision = policy.grant_scopes(ALICE, "storage.modify:/data/shared", Client("c"))
    assert refused(decision, "storage.modify:/data/shared", "no write permission on /data/shared/readonly.txt")
    assert isinstance(policy.grant_scopes(ALICE, "write:/data/shared", Client("c")), Refusal)
    assert isinstance(policy.grant_scopes(ALICE, "storage.modify:/data/shared/alice.txt", Client("c")), Grant)


def test_sticky_directory_with_others_entries_refuses_modify(policy):
    """Rule 4: in a sticky 1777 directory alice cannot delete or rename bob's file, so no modify."""
    decision = policy.grant_scopes(ALICE, "storage.modify:/data/sticky", Client("c"))
    assert refused(decision, "storage.modify:/data/sticky",
                   "/data/sticky is a sticky directory (mode 1777, owner 0) holding entries of other users")
    assert isinstance(policy.grant_scopes(BOB, "storage.modify:/data/sticky", Client("c")), Refusal)
    assert isinstance(policy.grant_scopes(ALICE, "write:/data/sticky", Client("c")), Refusal)
    assert isinstance(policy.grant_scopes(ALICE, "storage.create:/data/sticky", SCITOKENS), Grant)
    assert isinstance(policy.grant_scopes(ALICE, "create:/data/sticky", WLCG), Refusal)  # read as write
    assert isinstance(policy.grant_scopes(ALICE, "storage.modify:/data/mine", Client("c")), Grant)
    assert isinstance(policy.grant_scopes(BOB, "storage.modify:/data/mine", Client("c")), Refusal)


def test_sticky_directory_owner_may_modify(policy):
    """The directory's owner may delete any entry of a sticky directory; others may not."""
    assert isinstance(policy.grant_scopes(CAROL, "storage.modify:/data/carols", Client("c")), Grant)
    assert isinstance(policy.grant_scopes(ALICE, "storage.modify:/data/carols", Client("c")), Grant)  # her own file
    os.chown(os.path.join(policy.root, "data/carols/alice.txt"), BOB_UID, ANA)
    try:
        if policy.index is not None:  # the index is a snapshot: scan again after the chown
            index = scan_tree(policy.root)
            policy = ScopePolicy(policy.root, strict=True, index=lambda: index)
        assert isinstance(policy.grant_scopes(ALICE, "storage.modify:/data/carols", Client("c")), Refusal)
        assert isinstance(policy.grant_scopes(CAROL, "storage.modify:/data/carols", Client("c")), Grant)
    finally:
        os.chown(os.path.join(policy.root, "data/carols/alice.txt"), ALICE_UID, ANA)


def test_an_acl_on_a_file_below_refuses(policy):
    """POSIX.1e ACL: a named-user entry on a file below takes alice's rights away."""
    decision = policy.grant_scopes(ALICE, "storage.read:/data/acl", Client("c"))
    assert refused(decision, "storage.read:/data/acl", "/data/acl/named.txt", "ACL user", "with ACL")
    assert isinstance(policy.grant_scopes(CAROL, "storage.read:/data/acl", Client("c")), Grant)
    assert isinstance(policy.grant_scopes(CAROL, "storage.modify:/data/acl", Client("c")), Grant)


def test_an_ordinary_tree_adds_nothing_to_the_index(tmp_path):
    """The index stays compact: ordinary umask, one owner — only the root is recorded."""
    top = tmp_path / "plain"
    for d in range(5):
        (top / f"d{d}/sub").mkdir(parents=True)
        for f in range(20):
            (top / f"d{d}/f{f}").write_text("x")
            (top / f"d{d}/sub/g{f}").write_text("x")
    os.chmod(top, 0o755)
    index = scan_tree(str(top))
    assert [b.path for b in index] == ["/"] and index.files == 200 and index.directories == 11


def test_an_index_of_an_older_format_counts_as_missing(root, redis_url):
    """A stored index the code cannot read (left by an older version) means "build it again",
    a 503 with a rebuild request, not a 500 and not a lax decision."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        store = TreeIndexStore(root, client, key="test:old-tree-index")
        client.set(store.key, scan_tree(root).to_json().replace('"version":2', '"version":1'))
        with pytest.raises(TreeIndexMissing):
            store.get()
        assert isinstance(store.rebuild(), TreeIndex) and len(store.get()) > 1
    finally:
        client.delete("test:old-tree-index")
        client.close()


# -- the operator's check-scope gives the token's answer ------------------------------------

@pytest.fixture
def cli_app(tmp_path, root):
    app = make_app(tmp_path, POSIX_PATH=root, DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    yield app
    with app.app_context():
        db.engine.dispose()


def test_check_scope_explains_strict_refusals(cli_app):
    """``check-scope`` names the file, the sticky directory and rule 4 of docs/authorization.md."""
    result = cli_app.test_cli_runner().invoke(args=["check-scope", "alice", "storage.read:/data/physics",
                                                    "storage.modify:/data/sticky", "storage.modify:/data/mine"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "REFUSED storage.read:/data/physics\n" in out and "/data/physics/secret.txt" in out
    assert "REFUSED storage.modify:/data/sticky\n" in out and "sticky directory" in out
    assert "GRANTED storage.modify:/data/mine\n" in out
    assert out.count("refused at rule 4 of docs/authorization.md (strict mode)") == 2
    assert "spec" not in out.lower()


def test_check_scope_lists_only_the_groups_the_client_may_see(cli_app):
    """``check-scope --client`` answers a bare ``wlcg.groups`` as the token would: only the groups
    the client's registered policy covers (docs/authorization.md, client policy)."""
    with cli_app.app_context():
        registration = runtime().clients.register(
            {"client_name": "atlas portal", "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI],
             "token_endpoint_auth_method": "none", "scope": "openid wlcg.groups:/atlas"},
            admin=True, source="admin")
        db.session.commit()
        client_id = registration.client.client_id
    runner = cli_app.test_cli_runner()
    result = runner.invoke(args=["check-scope", "--client", client_id, "alice", "wlcg.groups"])
    assert result.exit_code == 0, result.output
    assert "this client may see: /atlas\n" in result.output and "/ana" not in result.output
    everything = runner.invoke(args=["check-scope", "alice", "wlcg.groups"])
    assert everything.exit_code == 0 and "this client may see: /alice /ana /atlas" in everything.output


# -- through a real authorization request -------------------------------------------------

@pytest.fixture
def http_app(tmp_path, root):
    app = make_app(tmp_path, POSIX_PATH=root, DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "analysis portal", "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI],
             "token_endpoint_auth_method": "none", "scope": "openid storage.read:/data storage.modify:/data"},
            admin=True, source="admin")
        db.session.commit()
        oauth = SimpleNamespace(client_id=registration.client.client_id)
    yield app, oauth
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("scope,needle", [
    ("storage.read:/data/physics", "no read permission on /data/physics/secret.txt for user alice"),
    ("storage.modify:/data/sticky", "/data/sticky is a sticky directory"),
])
def test_strict_refusal_over_http(http_app, scope, needle):
    """RFC 6749 §4.1.2.1 ``invalid_scope`` for a scope a file or a sticky directory below refuses."""
    app, oauth = http_app
    client = app.test_client()
    sign_in(client)
    _, challenge = pkce()
    html, response = approve(client, authorize_url(oauth, scope, challenge))
    assert needle in html and 'id="approve"' not in html
    params = callback_params(response)
    assert params["error"] == "invalid_scope" and "code" not in params
    assert params["error_description"].startswith(f"{scope} refused: strict mode: ")
    assert needle in params["error_description"]


def test_strict_grant_over_http(http_app):
    """The control: a subtree with nothing refusing below is granted with a code."""
    app, oauth = http_app
    client = app.test_client()
    sign_in(client)
    _, challenge = pkce()
    _, response = approve(client, authorize_url(oauth, "storage.read:/data/open storage.modify:/data/mine",
                                                challenge))
    assert "code" in callback_params(response)


def test_refusals_do_not_tell_what_another_users_directory_holds(tmp_path):
    """The consent page and RFC 6749 ``invalid_scope`` quote the refusal: for paths inside bob's
    0700 directory they must read the same whether the name exists, is a file or is missing (an
    existing name was refused with another sentence than a missing one)."""
    root = tmp_path / "site"
    (root / "data" / "bob" / "thesis").mkdir(parents=True)
    (root / "data" / "bob" / "notes.txt").write_text("x")
    os.chmod(root / "data" / "bob", 0o700)
    for path in (root / "data" / "bob", root / "data" / "bob" / "thesis", root / "data" / "bob" / "notes.txt"):
        os.chown(path, BOB_UID, BOB_UID)
    app = make_app(tmp_path, POSIX_PATH=str(root), DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    with app.app_context():
        oauth = SimpleNamespace(client_id=runtime().clients.register(
            {"client_name": "analysis portal", "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI],
             "token_endpoint_auth_method": "none", "scope": "openid storage.read:/data"},
            admin=True, source="admin").client.client_id)
        db.session.commit()
    client = app.test_client()
    sign_in(client)
    descriptions = set()
    for path in ("/data/bob/thesis", "/data/bob/missing", "/data/bob/notes.txt/x"):
        _, challenge = pkce()
        html, response = approve(client, authorize_url(oauth, f"storage.read:{path}", challenge))
        params = callback_params(response)
        assert params["error"] == "invalid_scope" and 'id="approve"' not in html
        descriptions.add(params["error_description"].replace(path, "PATH"))
    assert descriptions == {"storage.read:PATH refused: no traverse (x) permission on /data/bob for user alice "
                            f"(other class, mode 0700, owner {BOB_UID} group {BOB_UID})"}, descriptions
    with app.app_context():
        db.engine.dispose()
