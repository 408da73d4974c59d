"""Strict mode: the index of permission boundaries and recursive-scope denials (docs/authorization.md, rule 4)."""

import os
import random

import pytest

from scitoken_issuer.services import tree_index as tree_index_module
from scitoken_issuer.services.posix import LiveSubtree, check_access
from scitoken_issuer.services.tree_index import Boundary, TreeIndex, TreeScanError, scan_tree
from scitoken_issuer.services.users import PosixUser
from tests.test_posix import acl_xattr

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

ANA = 21000
ALICE = PosixUser("alice", 20001, 20001, frozenset({20001, ANA}))
BOB = PosixUser("bob", 20002, 20002, frozenset({20002}))


@pytest.fixture
def root(tmp_path) -> str:
    top = tmp_path / "posix"
    dirs = {
        "": (0, 0, 0o755),
        "data": (0, 0, 0o755),
        "data/ana": (0, ANA, 0o775),
        "data/ana/sub": (0, ANA, 0o775),
        "data/ana/sub/deep": (0, ANA, 0o775),
        "data/ana/private": (20002, 20002, 0o700),
        "data/ana/private/inner": (20002, 20002, 0o700),
        "data/ana-x": (20002, 20002, 0o700),
        "data/readonly": (0, ANA, 0o755),
        "data/readonly/dropbox": (0, ANA, 0o775),
        "proj": (0, 0, 0o755),
        "proj/a": (0, 0, 0o755),
        "home/bob": (20002, 20002, 0o700),
    }
    for rel, (uid, gid, mode) in dirs.items():
        path = top / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    os.chmod(top / "home", 0o755)
    (top / "data/ana/sub/f").write_text("x")
    os.chmod(top / "data/ana/sub/f", 0o644)
    os.symlink("../home/bob", top / "proj/tobob")  # leaves /proj: a boundary
    os.symlink("/etc", top / "proj/a/out")  # leaves the root: always a boundary
    os.symlink("deep", top / "data/ana/sub/here")  # stays in its directory: not recorded
    return str(top)


def test_scan_records_only_boundaries(root):
    """Directories whose owner, group or mode differ from the parent's, escaping links, and
    files denying what their directory grants: root's 0644 ``f`` in the group-writable ``sub``
    keeps ana members from modifying it."""
    index = scan_tree(root)
    got = {(b.path, b.kind) for b in index}
    assert got == {
        ("/", "directory"), ("/data/ana", "directory"), ("/data/ana/private", "directory"),
        ("/data/ana-x", "directory"), ("/data/readonly", "directory"),
        ("/data/readonly/dropbox", "directory"), ("/home/bob", "directory"),
        ("/proj/tobob", "symlink"), ("/proj/a/out", "symlink"), ("/data/ana/sub/f", "file"),
    }
    assert index.directories == 14 and index.files == 1
    links = {b.path: b.target for b in index if b.kind == "symlink"}
    assert links == {"/proj/tobob": "/home/bob", "/proj/a/out": None}


def test_private_directory_below_refuses_recursive_read(root):
    """Rule 4: a 0700 directory of someone else below a readable one refuses read."""
    index = scan_tree(root)
    b = index.first_denial("/data/ana", ALICE, "read")
    assert b is not None and b.path == "/data/ana/private"
    assert b.explain(ALICE, "read") == ("no read and traverse (x) permission on /data/ana/private for "
                                        "user alice (other class, mode 0700, owner 20002 group 20002)")
    assert index.first_denial("/data/ana/sub", ALICE, "read") is None
    assert index.first_denial("/data/ana/private", BOB, "read") is None


def test_sibling_with_common_prefix_is_not_below(root):
    """/data/ana-x is not below /data/ana even though the string starts the same."""
    index = scan_tree(root)
    assert index.first_denial("/data/ana/sub", ALICE, "create") is None
    assert index.first_denial("/data/ana/", ALICE, "read").path == "/data/ana/private"


def test_write_boundaries(root):
    index = scan_tree(root)
    assert index.first_denial("/data/readonly/dropbox", ALICE, "create") is None
    assert index.first_denial("/data/readonly", ALICE, "create").path == "/data/readonly"
    assert index.first_denial("/data/readonly", ALICE, "read") is None
    assert index.first_denial("/", ALICE, "modify").path == "/"


def test_symlinks_leaving_the_subtree_deny(root):
    """A storage service follows links, so a link out of the granted subtree is a hole."""
    index = scan_tree(root)
    assert index.first_denial("/proj", BOB, "read").path == "/proj/a/out"
    assert index.first_denial("/proj/a", BOB, "read").path == "/proj/a/out"
    rooted = TreeIndex(index.root, [b for b in index if b.path != "/proj/a/out"])
    assert rooted.first_denial("/proj", BOB, "read").path == "/proj/tobob"
    assert rooted.first_denial("/", BOB, "read") is None  # /home/bob is inside "/"
    assert "outside the storage root" in index.first_denial("/proj/a", BOB, "read").explain(BOB, "read")


def test_check_access_strict_mode(root):
    """Rule 4 through check_access: refused with the boundary named, only with an index."""
    index = scan_tree(root)
    assert check_access(root, ALICE, "read", "/data/ana").granted
    d = check_access(root, ALICE, "read", "/data/ana", index=index)
    assert not d.granted and d.step == 4 and d.checked == "/data/ana/private"
    assert d.reason.startswith("strict mode: no read and traverse (x) permission on /data/ana/private")
    assert check_access(root, ALICE, "read", "/data/ana/sub", index=index).granted
    assert check_access(root, ALICE, "create", "/data/ana/sub/new/dir", index=index).granted


def test_unreadable_directory_denies_everything_below_and_above(root, monkeypatch):
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("/data/ana/sub"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(tree_index_module.os, "scandir", scandir)
    index = scan_tree(root)
    assert index.first_denial("/data/ana/sub", ALICE, "read").kind == "unreadable"
    assert index.first_denial("/data/ana/sub/deep/x", ALICE, "read").kind == "unreadable"
    assert index.first_denial("/data/ana", ALICE, "read").path in ("/data/ana/private", "/data/ana/sub")
    assert "could not be scanned" in index.first_denial("/data/ana/sub", ALICE, "read").explain(ALICE, "read")


def test_json_round_trip_gives_same_answers(root):
    index = scan_tree(root)
    copy = TreeIndex.from_json(index.to_json())
    assert list(copy) == list(index) and copy.root == index.root
    assert copy.directories == index.directories and copy.scanned_at == index.scanned_at
    for path in ("/", "/data", "/data/ana", "/proj", "/home/bob"):
        for user in (ALICE, BOB):
            for perm in ("read", "create"):
                assert copy.first_denial(path, user, perm) == index.first_denial(path, user, perm)


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"format": "x"}', "null",
                                  '{"format":"scitoken-issuer-tree-index","version":1}',
                                  '{"format":"scitoken-issuer-tree-index","version":2}',
                                  '{"format":"scitoken-issuer-tree-index","version":2,"root":"/",'
                                  '"scanned_at":0,"directories":1,"files":0,"boundaries":[[1]]}',
                                  '{"format":"scitoken-issuer-tree-index","version":1,"root":"/",'
                                  '"scanned_at":0,"directories":1,"boundaries":[]}'])
def test_from_json_rejects_garbage(text):
    with pytest.raises(ValueError):
        TreeIndex.from_json(text)


def test_scan_limits_and_errors(root, tmp_path):
    with pytest.raises(TreeScanError, match="more than 3 directories"):
        scan_tree(root, max_directories=3)
    with pytest.raises(TreeScanError):
        scan_tree(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(TreeScanError, match="not a directory"):
        scan_tree(str(tmp_path / "file"))


def test_describe_lists_boundaries(root):
    lines = list(scan_tree(root).describe())
    assert lines[0].startswith("# ") and "14 directories scanned, 10 boundaries, 1 files" in lines[0]
    assert "/data/ana/private  owner 20002 group 20002 mode 0700" in lines
    assert "/proj/a/out  symlink -> (outside the storage root)" in lines
    assert "/data/ana/sub/f  file  owner 0 group 0 mode 0644" in lines


NAMED_ALICE_NONE = ((1, 7, 0xFFFFFFFF), (2, 0, 20001), (4, 5, 0xFFFFFFFF), (16, 5, 0xFFFFFFFF), (32, 5, 0xFFFFFFFF))


def _naive_first_denial(boundaries, path, user, perm):
    """Reference implementation: scan everything."""
    path = path.rstrip("/") or "/"
    below = [b for b in sorted(boundaries, key=lambda b: b.path)
             if path == "/" or b.path == path or b.path.startswith(path + "/")]
    for b in below:
        if b.kind == "symlink":
            if b.path != path and (b.target is None or not (
                    path == "/" or b.target == path or b.target.startswith(path + "/"))):
                return b
        elif b.denies(user, perm):
            return b
    return None


@pytest.mark.parametrize("patterns", [3, 5000])
def test_big_index_matches_reference(patterns):
    """The candidate-list query gives the answer of a full scan, with few or many permission
    patterns, directories and files, ACLs and sticky directories holding others' entries."""
    rng = random.Random(patterns)
    names = ["a", "b", "a-b", "a.b", "c", "d0"]
    boundaries, seen = [Boundary("/", "directory", 0, 0, 0o755)], {"/"}
    for _ in range(4000):
        path = "/" + "/".join(rng.choice(names) for _ in range(rng.randint(1, 5)))
        if path in seen:
            continue
        seen.add(path)
        if rng.random() < 0.05:
            target = rng.choice([None, "/a", "/a/b", "/c/d0"])
            boundaries.append(Boundary(path, "symlink", target=target))
        else:
            sig = rng.randrange(patterns)
            mode = rng.choice([0o755, 0o700, 0o775, 0o750, 0o711, 0o070, 0o555, 0o007, 0o570]) if sig > 2 else 0o777
            acl = NAMED_ALICE_NONE if rng.random() < 0.03 else None
            kind, owners = "directory", ()
            if rng.random() < 0.2:
                kind, mode = "file", rng.choice([0o644, 0o600, 0o664, 0o444, 0o666, 0o060, 0o606])
            elif rng.random() < 0.06:
                mode |= 0o1000
                owners = tuple(sorted(set(rng.choices(range(20000, 20004), k=rng.randint(1, 2)))))
            boundaries.append(Boundary(path, kind, 20000 + sig % 7, ANA + sig % 3, mode, None, acl, owners))
    index = TreeIndex("/srv", boundaries)
    queries = ["/"] + [rng.choice(sorted(seen)) for _ in range(300)] + ["/a/zz", "/nothing"]
    carol = PosixUser("carol", 20003, 20003, frozenset({20003, ANA, ANA + 1, ANA + 2}))
    for path in queries:
        for user in (ALICE, BOB, carol):
            for perm in ("read", "modify", "stage", "create", "write"):
                assert index.first_denial(path, user, perm) == _naive_first_denial(boundaries, path, user, perm)


# -- the index against a plain walk of a real tree ------------------------------------------

RANDOM_USERS = (
    ALICE, BOB, PosixUser("carol", 20003, 20003, frozenset({20003, ANA, ANA + 1})),
    PosixUser("dave", 20004, 20004, frozenset({20004, ANA + 1})), PosixUser("root", 0, 0, frozenset({0})),
)
_DIR_MODES = [0o755, 0o775, 0o770, 0o750, 0o700, 0o711, 0o1777, 0o1770, 0o2775, 0o555, 0o777, 0o3777]
_FILE_MODES = [0o644, 0o664, 0o600, 0o640, 0o444, 0o666, 0o660, 0o604, 0o000]


def _random_acl(rng, owner: int, mode: int) -> bytes:
    """A valid access ACL: owner/group/other from ``mode``, named entries for some users and groups, a mask."""
    named_users = sorted(rng.sample([20001, 20002, 20003, 20004], rng.randint(0, 2)))
    named_groups = sorted(rng.sample([ANA, ANA + 1, 20002], rng.randint(0, 2)))
    undefined = 0xFFFFFFFF
    entries = [(1, (mode >> 6) & 7, undefined)]
    entries += [(2, rng.randrange(8), u) for u in named_users if u != owner]
    entries += [(4, (mode >> 3) & 7, undefined)]
    entries += [(8, rng.randrange(8), g) for g in named_groups]
    entries += [(16, rng.randrange(8), undefined), (32, mode & 7, undefined)]
    return acl_xattr(*entries)


def build_random_tree(top, seed: int) -> tuple[list[str], bool]:
    """A tree of directories, files and links with several owners, groups, modes, sticky
    directories and (where the filesystem supports them) ACLs; most entries inherit their
    parent's owner and permissions, as in real trees. Returns its scope paths and whether ACLs stuck."""
    rng = random.Random(seed)
    names = ["a", "b", "a-b", "a.b", "c", "d0"]
    owners, groups = [0, 20001, 20002, 20003, 20004], [0, ANA, ANA + 1, 20001, 20002]
    top.mkdir()
    os.chmod(top, 0o755)
    paths, acls = ["/"], True
    pending = [(top, "", 0, (0, 0, 0o755))]
    while pending:
        host, scoped, depth, (uid, gid, mode) = pending.pop()
        for name in rng.sample(names, 6 if depth < 2 else rng.randint(2, 6)):
            child, child_scoped = host / name, f"{scoped}/{name}"
            roll = rng.random()
            if roll < 0.06:
                os.symlink(rng.choice(["a", "../a", "../..", "/etc", "b/c", "../../a-b"]), child)
                os.lchown(child, rng.choice(owners), 0)
            elif roll < (0.45 if depth else 0.8) and depth < 4:
                child.mkdir()
                own = (uid, gid, mode) if rng.random() < 0.7 else (
                    rng.choice(owners), rng.choice(groups), rng.choice(_DIR_MODES))
                os.chown(child, own[0], own[1])
                os.chmod(child, own[2])
                pending.append((child, child_scoped, depth + 1, own))
            else:
                child.write_text("x")
                inherited = (uid, gid, mode & 0o666 & ~0o022) if rng.random() < 0.7 else (
                    rng.choice(owners), rng.choice(groups), rng.choice(_FILE_MODES))
                os.chown(child, inherited[0], inherited[1])
                os.chmod(child, inherited[2])
            if not child.is_symlink() and rng.random() < 0.08:
                try:
                    os.setxattr(child, "system.posix_acl_access", _random_acl(rng, os.lstat(child).st_uid,
                                                                              os.lstat(child).st_mode))
                except OSError:
                    acls = False
            paths.append(child_scoped)
    return paths, acls


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_tree_index_matches_live_walk(tmp_path, seed):
    """Rule 4 both ways: for every (user, permission, path), the decision with the scanned index
    equals the decision with the live walk of the tree (``LiveSubtree``, every entry judged)."""
    top = tmp_path / "random"
    paths, acls = build_random_tree(top, seed)
    index, live = scan_tree(str(top)), LiveSubtree(str(top))
    assert len(index) < len(paths)  # compact: most entries inherit and are not recorded
    strict_refusals: dict[str, int] = {}
    for path in paths + ["/nothing", "/a/new/deeper"]:
        for user in RANDOM_USERS:
            for perm in ("read", "create", "modify", "stage", "write"):
                indexed = check_access(str(top), user, perm, path, index=index)
                walked = check_access(str(top), user, perm, path, index=live)
                assert indexed == walked, (path, user.name, perm)
                if indexed.step == 4:
                    kind = "sticky" if "sticky directory" in indexed.reason else (
                        "link" if "symbolic link" in indexed.reason else "entry")
                    strict_refusals[kind] = strict_refusals.get(kind, 0) + 1
    assert set(strict_refusals) >= {"sticky", "entry"}, strict_refusals  # the test is not vacuous
