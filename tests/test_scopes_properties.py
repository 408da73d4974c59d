"""Property tests: no scope string ever yields a granted or checked path outside POSIX_PATH
(docs/authorization.md, rule 1).

Hypothesis feeds nasty strings — ``..``, ``.``, ``//``, NUL, unicode, percent-encoding, and names of
symlinks that escape the root, loop, or point at a sibling whose name starts like the root's.
"""

import os
import posixpath

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from scitoken_issuer.services.posix import check_access
from scitoken_issuer.services.scopes import ScopeError, parse_scope, parse_scopes, storage_permissions
from scitoken_issuer.services.tree_index import scan_tree
from scitoken_issuer.services.users import PosixUser

ROOT_USER = PosixUser("root", 0, 0, frozenset({0}))
OTHER_USER = PosixUser("someone", 20010, 20010, frozenset({20010}))

SEGMENTS = ["a", "b", "..", ".", "", "...", "out", "up", "upup", "in", "loop", "self", "evil", "abs_root",
            "abs_parent", "back", "private", "missing", "\x00", "\n", "é", "%2e%2e", "a b", "posix-evil",
            "~", "\\", "\u202e", "a.", "dangling"]
paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), max_size=8).map(lambda s: "/" + "/".join(s)),
    st.lists(st.sampled_from(SEGMENTS), max_size=8).map("/".join),
    st.text(max_size=40),
    st.text(alphabet="/.ab\x00%", max_size=30),
)
prefixes = st.sampled_from(["storage.read:", "storage.create:", "storage.modify:", "storage.stage:", "read:",
                            "write:", "wlcg.groups:", "storage.read", "Storage.read:", ""])
scope_texts = st.one_of(st.tuples(prefixes, paths).map("".join), st.text(max_size=60))
PERMISSIONS = st.sampled_from(["read", "create", "modify", "stage"])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A root with escaping, looping and sibling-prefix symlinks; returns (root, realpath(root))."""
    base = tmp_path_factory.mktemp("props")
    root = base / "posix"
    (root / "a/b").mkdir(parents=True)
    (root / "private").mkdir()
    (base / "posix-evil").mkdir()
    (base / "posix-evil/secret").write_text("x")
    os.chmod(root / "private", 0o700)
    for name, target in {"out": "/etc", "up": "..", "upup": "../..", "in": "a", "loop": "loop",
                         "self": ".", "evil": "../posix-evil", "abs_root": str(root),
                         "abs_parent": str(base), "dangling": "../posix-evil/new"}.items():
        os.symlink(target, root / name)
    os.symlink("../../..", root / "a/b/back")
    return str(root), os.path.realpath(root)


def _examined(path: str) -> str:
    """The inode ``lstat`` looks at: parent resolved, last component not followed."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@settings(max_examples=500, deadline=None)
@given(scope_texts)
def test_parsed_paths_are_canonical_and_stay_under_root(text):
    """Whatever parses has an absolute, canonical path that cannot climb out when joined."""
    try:
        scope = parse_scope(text)
    except ScopeError:
        return
    if scope.path is None:
        assert scope.kind not in ("storage",)
        return
    path = scope.path
    assert path.startswith("/") and posixpath.normpath(path) in (path, "//")
    assert ".." not in path.split("/") and "." not in path.split("/")
    assert all("\x21" <= c <= "\x7e" for c in path)
    assert _inside(posixpath.normpath("/srv/posix" + path).rstrip("/"), "/srv/posix")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_scopes_only_raises_scope_error(text):
    try:
        parse_scopes(text)
    except ScopeError:
        pass


@settings(max_examples=500, deadline=None)
@given(path=paths, permission=PERMISSIONS)
def test_no_path_is_granted_or_checked_outside_root(tree, path, permission):
    """docs/authorization.md, rule 1: granted only if the path, symlinks resolved, stays inside POSIX_PATH."""
    root, real_root = tree
    for user in (ROOT_USER, OTHER_USER):
        decision = check_access(root, user, permission, path)
        event(f"granted={decision.granted} step={decision.step}")
        if decision.checked is not None:
            assert decision.checked.startswith("/")
            assert _inside(_examined(real_root + decision.checked.rstrip("/")), real_root)
        if decision.granted:
            assert _inside(os.path.realpath(real_root + path.rstrip("/")), real_root)
            assert not _inside(os.path.realpath(real_root + path), os.path.dirname(real_root) + "/posix-evil")


@settings(max_examples=300, deadline=None)
@given(text=scope_texts)
def test_no_scope_string_is_granted_outside_root_in_strict_mode(tree, text):
    """The same, end to end from the scope string, with the strict index (docs/authorization.md, rule 4)."""
    root, real_root = tree
    index = _index(root)
    try:
        scope = parse_scope(text)
    except ScopeError:
        return
    for permission in storage_permissions(scope):
        decision = check_access(root, ROOT_USER, permission, scope.path, index=index)
        if decision.granted:
            assert _inside(os.path.realpath(real_root + scope.path.rstrip("/")), real_root)


_INDEXES: dict[str, object] = {}


def _index(root):
    if root not in _INDEXES:
        _INDEXES[root] = scan_tree(root)
    return _INDEXES[root]


def test_escaping_links_are_the_ones_refused(tree):
    """Anchor the properties with the concrete cases they must cover."""
    root, _ = tree
    for path in ("/out", "/up", "/upup/x", "/evil", "/evil/secret", "/abs_parent", "/a/b/back",
                 "/dangling", "/in/b/back/posix-evil"):
        decision = check_access(root, ROOT_USER, "read", path)
        assert not decision.granted and "outside the storage root" in decision.reason, path
    for path in ("/in/b", "/abs_root/a", "/self/a/b", "/", "/missing/x"):
        assert check_access(root, ROOT_USER, "read", path).granted, path
    assert check_access(root, ROOT_USER, "read", "/", index=_index(root)).granted is False
