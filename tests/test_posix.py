"""The POSIX decision on a real directory tree with real owners, groups and modes (docs/authorization.md, rules 1–3).

The tree is built with chown/chmod, so these tests need root (CI runs as root).
"""

import os
import struct

import pytest

from scitoken_issuer.services.posix import StatCache, check_access, check_scope
from scitoken_issuer.services.scopes import parse_scope
from scitoken_issuer.services.tree_index import scan_tree
from scitoken_issuer.services.users import PosixUser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

ANA = 21000
ALICE = PosixUser("alice", 20001, 20001, frozenset({20001, ANA}))
BOB = PosixUser("bob", 20002, 20002, frozenset({20002}))
CAROL = PosixUser("carol", 20003, 20003, frozenset({20003, ANA}))
ROOT = PosixUser("root", 0, 0, frozenset({0}))


def acl_xattr(*entries: tuple[int, int, int]) -> bytes:
    """A Linux ``system.posix_acl_access`` value: version 2, (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def build_tree(base) -> str:
    """The site tree used by the POSIX tests; returns POSIX_PATH."""
    root = base / "posix"
    dirs = {
        "": (0, 0, 0o755),
        "data": (0, 0, 0o755),
        "data/ana": (0, ANA, 0o775),
        "data/ana/sub": (0, ANA, 0o775),
        "data/ana/private": (20002, 20002, 0o700),
        "data/owneronly": (20001, ANA, 0o070),
        "home": (0, 0, 0o755),
        "home/alice": (20001, 20001, 0o700),
        "home/bob": (20002, 20002, 0o700),
        "secret": (0, 0, 0o711),
        "secret/pub": (0, 0, 0o755),
        "locked": (0, 0, 0o700),
        "locked/open": (0, 0, 0o777),
        "links": (0, 0, 0o755),
        "acl": (0, 0, 0o755),
        "aclgroup": (0, 0, 0o750),
    }
    for rel, (uid, gid, mode) in dirs.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    (root / "data/ana/file.txt").write_text("x")
    os.chown(root / "data/ana/file.txt", 20001, ANA)
    os.chmod(root / "data/ana/file.txt", 0o640)
    links = root / "links"
    os.symlink("/etc", links / "escape")
    os.symlink("../../..", links / "rel_escape")
    os.symlink("../data/ana", links / "inside")
    os.symlink(str(root / "data"), links / "abs_inside")
    os.symlink("../locked/open", links / "tolocked")
    os.symlink("loop", links / "loop")
    os.symlink("../data/ana/newdir", links / "dangling")
    os.symlink("/nonexistent/place", links / "dangling_out")
    os.symlink("../../data", root / "locked/open/back")
    # ACL: alice named with no rights; the group 21000 (not the owning group) may read.
    os.setxattr(root / "acl", "system.posix_acl_access",
                acl_xattr((1, 7, 0xFFFFFFFF), (2, 0, 20001), (4, 5, 0xFFFFFFFF), (16, 5, 0xFFFFFFFF),
                          (32, 5, 0xFFFFFFFF)))
    os.setxattr(root / "aclgroup", "system.posix_acl_access",
                acl_xattr((1, 7, 0xFFFFFFFF), (4, 5, 0xFFFFFFFF), (8, 5, ANA), (16, 5, 0xFFFFFFFF),
                          (32, 0, 0xFFFFFFFF)))
    return str(root)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return build_tree(tmp_path_factory.mktemp("tree"))


def test_group_write_granted(root):
    """Rule 2: group bits apply when the directory's group is one of the user's."""
    d = check_access(root, ALICE, "create", "/data/ana")
    assert d.granted, d.reason
    assert (d.access_class, d.checked, d.mode, d.group) == ("group", "/data/ana", 0o775, ANA)


def test_refusal_names_directory_class_and_bits(root):
    """Rule 2: other bits for a stranger; the reason says where, which class and bit."""
    d = check_access(root, BOB, "modify", "/data/ana")
    assert not d.granted and d.step == 2
    assert d.reason == ("no write permission on /data/ana for user bob "
                        "(other class, mode 0775, owner 0 group 21000)")
    assert (d.checked, d.access_class, d.missing) == ("/data/ana", "other", "w")


def test_read_needs_r_and_x_on_a_directory(root):
    d = check_access(root, ALICE, "read", "/secret")
    assert not d.granted and d.missing == "r" and d.access_class == "other"
    assert check_access(root, ALICE, "read", "/secret/pub").granted  # x on /secret is enough


def test_owner_bits_win_over_group_bits(root):
    """POSIX: the owner class decides for the owner, even when the group class would allow."""
    d = check_access(root, ALICE, "read", "/data/owneronly")
    assert not d.granted and d.access_class == "owner"
    assert check_access(root, CAROL, "read", "/data/owneronly").granted


def test_no_root_bypass(root):
    """uid 0 is judged by the same rule: other bits on alice's 0700 home."""
    d = check_access(root, ROOT, "read", "/home/alice")
    assert not d.granted and d.access_class == "other"
    assert check_access(root, ALICE, "read", "/home/alice").granted


def test_files_need_r_or_w_only(root):
    """On a file, read needs r and create/modify need w (x only matters on directories)."""
    assert check_access(root, ALICE, "read", "/data/ana/file.txt").granted
    assert check_access(root, ALICE, "modify", "/data/ana/file.txt").granted
    assert check_access(root, CAROL, "read", "/data/ana/file.txt").granted
    d = check_access(root, CAROL, "modify", "/data/ana/file.txt")
    assert not d.granted and d.missing == "w"
    assert not check_access(root, BOB, "read", "/data/ana/file.txt").granted


def test_missing_path_judged_on_nearest_existing_ancestor(root):
    """Rule 2: a path not created yet is judged on its nearest existing ancestor."""
    d = check_access(root, ALICE, "create", "/data/ana/new/deeper/file")
    assert d.granted and not d.exists and d.checked == "/data/ana"
    d = check_access(root, BOB, "create", "/data/ana/new")
    assert not d.granted and not d.exists and d.checked == "/data/ana" and d.missing == "w"
    d = check_access(root, ALICE, "create", "/home/bob/new")
    assert not d.granted and d.checked == "/home/bob"


def test_path_through_a_file_is_refused(root):
    d = check_access(root, ALICE, "read", "/data/ana/file.txt/x")
    assert not d.granted and d.step == 1 and "not a directory" in d.reason


def test_every_ancestor_must_be_traversable(root):
    """Rule 3: x on every directory between POSIX_PATH and the target."""
    d = check_access(root, ALICE, "create", "/locked/open")
    assert not d.granted and d.step == 3
    assert d.reason == ("no traverse (x) permission on /locked for user alice "
                        "(other class, mode 0700, owner 0 group 0)")
    assert not check_access(root, ALICE, "create", "/locked/open/missing").granted


@pytest.mark.parametrize("permission", ["read", "create", "modify"])
def test_nothing_beyond_an_untraversable_directory_shapes_the_answer(root, permission):
    """Rule 3 is decided before looking inside: alice cannot traverse /locked, so whether a name
    exists there, is a directory, a file or a link must not change the refusal (it did: an
    existing name was refused on rule 3, a missing one on rule 2 with another sentence, a
    path through a file as "not a directory" — telling alice what /locked holds)."""
    answers = {(d.granted, d.step, d.reason, d.checked) for d in (
        check_access(root, ALICE, permission, path) for path in
        ("/locked/open", "/locked/missing", "/locked/open/back/ana", "/locked/open/back/ana/file.txt/x",
         "/locked/open/missing/deeper"))}
    assert answers == {(False, 3, "no traverse (x) permission on /locked for user alice "
                        "(other class, mode 0700, owner 0 group 0)", "/locked")}, answers


def test_storage_root_itself_must_be_traversable(tmp_path):
    top = tmp_path / "top"
    (top / "pub").mkdir(parents=True)
    os.chmod(top, 0o700)
    os.chmod(top / "pub", 0o777)
    d = check_access(str(top), ALICE, "read", "/pub")
    assert not d.granted and d.step == 3 and d.checked == "/"


@pytest.mark.parametrize("path", ["/links/escape", "/links/escape/passwd", "/links/rel_escape",
                                  "/links/rel_escape/etc", "/links/dangling_out"])
def test_symlink_escaping_root_is_refused(root, path):
    """Rule 1: joined under POSIX_PATH with symlinks resolved, the path stays inside."""
    d = check_access(root, ROOT, "read", path)
    assert not d.granted and d.step == 1 and "outside the storage root" in d.reason


def test_symlinks_inside_root_are_followed(root):
    assert check_access(root, ALICE, "read", "/links/inside/sub").granted
    assert check_access(root, ALICE, "create", "/links/abs_inside/ana").granted
    d = check_access(root, ALICE, "read", "/links/inside/private")
    assert not d.granted and d.checked == "/data/ana/private"
    d = check_access(root, ALICE, "create", "/links/dangling")
    assert d.granted and not d.exists and d.checked == "/data/ana"


def test_symlink_target_chain_must_be_traversable(root):
    """A link inside root to a place behind a closed directory does not open it."""
    d = check_access(root, ALICE, "create", "/links/tolocked")
    assert not d.granted and d.step == 3 and d.checked == "/locked"


def test_symlink_parent_must_be_traversable(root):
    """The directory holding the link must be traversable too, as for the kernel."""
    d = check_access(root, ALICE, "read", "/locked/open/back/ana")
    assert not d.granted and d.checked == "/locked"


def test_symlink_loop_is_refused(root):
    d = check_access(root, ROOT, "read", "/links/loop")
    assert not d.granted and "too many symbolic links" in d.reason


@pytest.mark.parametrize("path", ["/data/../etc", "data/ana", "/data//ana", "/data/ana/", "/data/./ana",
                                  "/data\x00/ana", "/da\nta", "", "/data/ana/.."])
def test_malformed_paths_refused_not_raised(root, path):
    d = check_access(root, ROOT, "read", path)
    assert not d.granted and d.step == 1


def test_unknown_permission_is_a_programming_error(root):
    with pytest.raises(ValueError):
        check_access(root, ALICE, "delete", "/data")


def test_posix_acl_named_user_takes_rights_away(root):
    """POSIX.1e ACL: a named-user entry decides before the group and other classes."""
    d = check_access(root, ALICE, "read", "/acl")
    assert not d.granted and d.access_class == "ACL user" and "with ACL" in d.reason
    assert check_access(root, BOB, "read", "/acl").granted


def test_posix_acl_named_group_grants(root):
    assert check_access(root, ALICE, "read", "/aclgroup").granted
    d = check_access(root, BOB, "read", "/aclgroup")
    assert not d.granted and d.access_class == "other"
    d = check_access(root, ALICE, "create", "/aclgroup")
    assert not d.granted and d.access_class == "ACL group" and d.missing == "w"


def test_check_scope_checks_every_permission_of_write(root):
    """docs/authorization.md: SciTokens write:/p needs both storage.create and storage.modify."""
    assert check_scope(root, ALICE, parse_scope("write:/data/ana/sub")).granted
    d = check_scope(root, BOB, parse_scope("write:/data/ana"))
    assert not d.granted and d.permission == "create"
    with pytest.raises(ValueError):
        check_scope(root, ALICE, parse_scope("openid"))


def test_stat_cache_gives_same_answers_and_bounded_staleness(tmp_path):
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    os.chmod(top, 0o755)
    os.chmod(top / "d", 0o755)
    cache = StatCache(ttl=3600)
    assert check_access(str(top), BOB, "read", "/d", stat_cache=cache).granted
    assert not check_access(str(top), BOB, "create", "/d/new", stat_cache=cache).granted
    os.chmod(top / "d", 0o700)
    assert check_access(str(top), BOB, "read", "/d", stat_cache=cache).granted  # within ttl
    assert not check_access(str(top), BOB, "read", "/d", stat_cache=StatCache(ttl=0)).granted
    small = StatCache(ttl=3600, maxsize=2)
    for _ in range(3):
        assert not check_access(str(top), BOB, "read", "/d/missing/deeper", stat_cache=small).granted


def test_index_for_another_root_is_refused(root, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    d = check_access(root, ALICE, "read", "/data/ana/sub", index=scan_tree(str(other)))
    assert not d.granted and d.step == 4


def test_missing_storage_root(tmp_path):
    d = check_access(str(tmp_path / "nope"), ALICE, "read", "/x")
    assert not d.granted and "storage root" in d.reason
