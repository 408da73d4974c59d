"""``GET /auth/scopes`` — which storage scopes may I ask for? (docs/researchers.md)

On generated trees (owners, groups, modes, private files, sticky directories) the listing gives,
for every path it lists, exactly what ``ScopePolicy.grant_scopes`` — the token endpoint's own
decision — answers, with the same sentence; it lists exactly the directories ``ls`` would show
the user; and it is an RFC 6750 protected resource (§3.1 errors) whose token's ``client_id``
decides whose policy applies.
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.authorization import Grant
from scitoken_issuer.services.policy import AnyClient
from scitoken_issuer.services.scopes import parse_scope
from tests.conftest import make_app
from tests.support.user_flows import DEVICE_GRANT, device_tokens, sign_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

ALICE, BOB = 10001, 10002  # config/dev-users.json: alice in physics (5000), atlas (5001); bob in atlas, cms (5002)
OWNERS = (0, ALICE, BOB)
GROUPS = (0, 5000, 5001, 5002, ALICE)
DIR_MODES = (0o755, 0o750, 0o700, 0o775, 0o770, 0o711, 0o2775, 0o1777, 0o1775)
FILE_MODES = (0o644, 0o640, 0o600, 0o664, 0o666)
PERMISSIONS = ("read", "create", "modify", "stage")


def generate_tree(base: Path, seed: int) -> str:
    """A random tree of directories (3 levels) and files; plus a private file and a sticky
    directory holding two users' files, so strict mode has something to refuse."""
    rng = random.Random(seed)
    root = base / f"tree{seed}"
    root.mkdir()
    os.chmod(root, 0o755)
    level = [root]
    for depth in range(3):
        below = []
        for parent in level:
            for i in range(rng.randint(1, 3) if depth else 4):
                child = parent / f"d{depth}{i}"
                child.mkdir()
                os.chown(child, rng.choice(OWNERS), rng.choice(GROUPS))
                os.chmod(child, rng.choice(DIR_MODES))
                below.append(child)
                if rng.random() < 0.5:
                    entry = child / f"f{i}.dat"
                    entry.write_text("x")
                    os.chown(entry, rng.choice(OWNERS), rng.choice(GROUPS))
                    os.chmod(entry, rng.choice(FILE_MODES))
        level = below
    shared = root / "shared"
    shared.mkdir()
    os.chown(shared, 0, 5001)
    os.chmod(shared, 0o2775)
    (shared / "private.txt").write_text("secret")
    os.chmod(shared / "private.txt", 0o600)
    drop = root / "dropbox"
    drop.mkdir()
    os.chmod(drop, 0o1777)
    for uid in (ALICE, BOB):
        (drop / f"{uid}.txt").write_text("x")
        os.chown(drop / f"{uid}.txt", uid, uid)
    return str(root)


def posix_bits(info: os.stat_result, uid: int, gids: set[int]) -> int:
    """Owner, else group, else other bits: the plain POSIX rule (the generated trees have no ACLs)."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid:
        return (mode >> 6) & 7
    if info.st_gid in gids:
        return (mode >> 3) & 7
    return mode & 7


def visible_directories(root: str, uid: int, gids: set[int], depth: int) -> list[str]:
    """A reference for what ``ls`` shows the user, breadth first by name: a directory's children
    only when it and every directory above grant x and it grants r."""
    found, queue = [], [("/", 0)]
    while queue:
        path, level = queue.pop(0)
        found.append(path)
        host = root if path == "/" else root + path
        parts = [p for p in path.split("/") if p]
        chain = [root] + [root + "/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        listable = all(posix_bits(os.stat(d), uid, gids) & 1 for d in chain) and \
            posix_bits(os.stat(host), uid, gids) & 4
        if level < depth and listable:
            names = sorted(e.name for e in os.scandir(host) if e.is_dir(follow_symlinks=False))
            queue.extend((f"{path.rstrip('/')}/{name}", level + 1) for name in names)
    return found


def app_for(tmp_path, tree: str, **settings):
    return make_app(tmp_path, POSIX_PATH=tree, SCOPES_LISTING_DEPTH=3, **settings)


def register(app, scope: str | None = None) -> str:
    """A dynamically registered device-flow client (as scitoken-token registers itself)."""
    metadata = {"client_name": "scitoken-token", "token_endpoint_auth_method": "none",
                "grant_types": [DEVICE_GRANT, "refresh_token"]}
    if scope:
        metadata["scope"] = scope
    with app.app_context():
        registration = runtime().clients.register(metadata, admin=False, source="dynamic")
        db.session.commit()
        return registration.client.client_id


def bearer(app, user: str, client_id: str, scope: str = "openid offline_access") -> dict:
    client = app.test_client()
    sign_in(client, user)
    return {"Authorization": "Bearer " + device_tokens(client, client_id, scope)["access_token"]}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("user", ["alice", "bob"])
def test_listing_matches_grant_scopes_on_a_generated_tree(tmp_path, seed, user):
    """docs/researchers.md: every answer of the listing is ``grant_scopes``' answer for that scope
    (granted or not, and the same sentence), for every path listed; the paths listed are exactly
    those ``ls`` would show; ``wlcg.groups`` lists the user's groups."""
    tree = generate_tree(tmp_path, seed)
    app = app_for(tmp_path, tree)
    client_id = register(app)
    body = app.test_client().get("/auth/scopes", headers=bearer(app, user, client_id)).get_json()
    with app.app_context():
        rt = runtime()
        posix_user, client = rt.groups.get(user), rt.clients.get(client_id)
        expected_paths = visible_directories(os.path.realpath(tree), posix_user.uid, set(posix_user.gids), 3)
        assert [entry["path"] for entry in body["paths"]] == expected_paths
        decided = {True: 0, False: 0}
        for entry in body["paths"]:
            for perm in PERMISSIONS:
                scope = f"storage.{perm}:{entry['path']}"
                outcome = rt.policy.grant_scopes(posix_user, [parse_scope(scope)], client)
                answer = entry["permissions"][perm]
                assert answer["scope"] == scope
                assert answer["granted"] is isinstance(outcome, Grant), (scope, answer)
                if not answer["granted"]:
                    assert answer["reason"] == outcome.reason
                decided[answer["granted"]] += 1
        groups = rt.policy.grant_scopes(posix_user, [parse_scope("wlcg.groups")], client)
    assert decided[True] and decided[False]  # the tree gives both answers
    assert body["wlcg.groups"]["groups"] == groups.groups == [f"/{g}" for g in posix_user.group_names]
    assert body["user"] == user and body["client_id"] == client_id and body["strict"] is True


def test_listing_refuses_what_strict_mode_refuses(tmp_path):
    """docs/authorization.md rule 4 as the listing shows it: a private file below refuses read of
    its directory; a sticky directory holding another user's file refuses modify."""
    app = app_for(tmp_path, generate_tree(tmp_path, 1))
    body = app.test_client().get("/auth/scopes", headers=bearer(app, "alice", register(app))).get_json()
    answers = {e["path"]: e["permissions"] for e in body["paths"]}
    for perm in PERMISSIONS:  # alice (atlas) may read and write /shared itself (2775), not the file below
        assert answers["/shared"][perm]["granted"] is False
        assert answers["/shared"][perm]["reason"].startswith(f"storage.{perm}:/shared refused: strict mode: ")
        assert "/shared/private.txt" in answers["/shared"][perm]["reason"]
    assert answers["/dropbox"]["read"]["granted"] is True
    assert answers["/dropbox"]["modify"]["granted"] is False and "sticky" in answers["/dropbox"]["modify"]["reason"]


def test_the_tokens_client_decides_the_policy(tmp_path):
    """The token's ``client_id`` picks the registered policy the listing applies: a client that
    registered only ``storage.read:/shared`` is refused everything else, saying so."""
    app = app_for(tmp_path, generate_tree(tmp_path, 2))
    narrow = register(app, "openid offline_access storage.read:/dropbox")
    body = app.test_client().get("/auth/scopes", headers=bearer(app, "alice", narrow)).get_json()
    answers = {e["path"]: e["permissions"] for e in body["paths"]}
    assert answers["/dropbox"]["read"]["granted"] is True
    assert answers["/shared"]["create"]["reason"] == f"scope storage.create:/shared is not allowed for client {narrow}"
    assert body["wlcg.groups"]["granted"] is False and body["wlcg.groups"]["groups"] == []


def test_listing_is_bounded_and_can_start_below(tmp_path):
    """SCOPES_LISTING_MAX bounds the count (``truncated``); ``depth`` never exceeds
    SCOPES_LISTING_DEPTH; ``path`` starts the listing further down."""
    app = app_for(tmp_path, generate_tree(tmp_path, 3), SCOPES_LISTING_MAX=3)
    headers = bearer(app, "bob", register(app))
    body = app.test_client().get("/auth/scopes?depth=9", headers=headers).get_json()
    assert len(body["paths"]) == 3 and body["truncated"] is True and body["depth"] == 3
    body = app.test_client().get("/auth/scopes?path=/dropbox&depth=0", headers=headers).get_json()
    assert [e["path"] for e in body["paths"]] == ["/dropbox"] and body["truncated"] is False


@pytest.mark.parametrize("query,headers,status,error", [
    ("", {}, 401, "invalid_token"),
    ("", {"Authorization": "Bearer not-a-token"}, 401, "invalid_token"),
    ("?path=/../etc", None, 400, "invalid_request"),
    ("?path=relative", None, 400, "invalid_request"),
    ("?depth=-1", None, 400, "invalid_request"),
    ("?depth=lots", None, 400, "invalid_request"),
])
def test_errors(tmp_path, query, headers, status, error):
    """RFC 6750 §3.1 (no token: a bare ``Bearer`` challenge; a bad one: ``invalid_token``) and
    RFC 6749 §5.2 JSON with ``Cache-Control: no-store`` for bad parameters; never a 500."""
    app = app_for(tmp_path, generate_tree(tmp_path, 1))
    if headers is None:
        headers = bearer(app, "alice", register(app))
    response = app.test_client().get(f"/auth/scopes{query}", headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"] == error and response.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_openid_is_refused(tmp_path):
    """RFC 6750 §3.1 ``insufficient_scope``: the listing needs a token carrying ``openid``."""
    app = app_for(tmp_path, generate_tree(tmp_path, 1))
    response = app.test_client().get("/auth/scopes", headers=bearer(app, "alice", register(app), "offline_access"))
    assert response.status_code == 403 and response.get_json()["error"] == "insufficient_scope"


def test_signed_in_browser_gets_a_page(tmp_path):
    """docs/researchers.md: a browser signed in here sees the same answers as an HTML table (for a
    client with no registered scope); a browser not signed in is sent to sign in."""
    tree = generate_tree(tmp_path, 2)
    app = app_for(tmp_path, tree)
    anonymous = app.test_client().get("/auth/scopes", headers={"Accept": "text/html"})
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/auth/login?next=/auth/scopes")
    browser = app.test_client()
    sign_in(browser, "alice")
    page = browser.get("/auth/scopes", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page.headers[
        "Content-Security-Policy"]
    html = page.get_data(as_text=True)
    with app.app_context():
        rt = runtime()
        alice = rt.groups.get("alice")
        for path in visible_directories(os.path.realpath(tree), alice.uid, set(alice.gids), 3):
            row = [("yes" if isinstance(rt.policy.grant_scopes(alice, [parse_scope(f"storage.{p}:{path}")],
                                                                AnyClient()), Grant) else "no") for p in PERMISSIONS]
            assert f'<td class="scope">{path}</td>' in html
            cells = html.split(f'<td class="scope">{path}</td>', 1)[1].split("</tr>", 1)[0]
            assert [c.split(">", 1)[1] for c in cells.split("</td>")[:4]] == row, path


def test_discovery_advertises_the_endpoint(tmp_path):
    """RFC 8414 §2 allows extension metadata: ``storage_scopes_endpoint`` is where the CLI finds it."""
    app = app_for(tmp_path, generate_tree(tmp_path, 1))
    meta = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert meta["storage_scopes_endpoint"] == "http://issuer.test/auth/scopes"


def test_signed_in_browser_with_a_bad_path_gets_a_page(tmp_path):
    """A researcher typing ``/auth/scopes?path=/data/`` (a trailing slash) or a bad ``depth`` in
    the browser got raw RFC 6749 JSON; a browser gets a readable 400 page saying what to change.
    A program asking for JSON still gets JSON."""
    tree = generate_tree(tmp_path, 2)
    app = app_for(tmp_path, tree)
    browser = app.test_client()
    sign_in(browser, "alice")
    for query in ("path=/data/", "depth=lots"):
        page = browser.get(f"/auth/scopes?{query}", headers={"Accept": "text/html,application/xhtml+xml"})
        text = page.get_data(as_text=True)
        assert page.status_code == 400 and page.mimetype == "text/html", text
        assert "Change ?path= or ?depth=" in text and "frame-ancestors 'none'" in page.headers[
            "Content-Security-Policy"]
        program = browser.get(f"/auth/scopes?{query}", headers={"Accept": "application/json"})
        assert program.status_code == 400 and program.get_json()["error"] == "invalid_request"
