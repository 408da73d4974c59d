"""Strict mode (SPEC §7 step 4): a precomputed index of the tree's permission boundaries.

WLCG storage scopes are recursive and storage services trust the token alone, so
``storage.read:/data`` must not be granted when some directory below ``/data`` would deny the
user. Walking the whole subtree per request is far too slow; instead :func:`scan_tree` walks the
tree once (a Celery task, or ``scitoken-issuer scan-tree``) and records only the *boundaries*:

- directories whose owner, group, mode or ACL differ from their parent's (every other directory
  has its parent's permissions, so it decides as its nearest boundary does);
- directories that could not be listed (nothing below them can be vouched for: always a denial);
- symbolic links whose target lies outside their own directory (a storage service following one
  serves data from outside the granted subtree; a denial unless the target is inside the query).

Files are not indexed (SPEC §7 speaks of directories). The index is a snapshot: refresh it on a
schedule; ``check_access`` still checks the target itself live.
"""

from __future__ import annotations

import json
import logging
import os
import stat as stat_mod
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from scitoken_issuer.services.posix import Acl, FileInfo, access_class, bit_words, needed_bits, read_info
from scitoken_issuer.services.users import PosixUser

logger = logging.getLogger(__name__)

FORMAT = "scitoken-issuer-tree-index"
VERSION = 1
DEFAULT_MAX_DIRECTORIES = 10_000_000


class TreeScanError(RuntimeError):
    """The tree could not be indexed as a whole (root missing, or too large)."""


@dataclass(frozen=True)
class Boundary:
    """One place where permissions change, by scope path (relative to the indexed root).

    ``kind`` is ``directory``, ``unreadable`` (could not be listed) or ``symlink`` (``target``: the
    scope path it resolves to, ``None`` if outside the root).
    """

    path: str
    kind: str = "directory"
    uid: int = -1
    gid: int = -1
    mode: int = 0
    target: str | None = None
    acl: Acl | None = None

    def denies(self, user: PosixUser, permission: str) -> bool:
        """Whether this directory denies ``user`` what a recursive ``permission`` scope grants."""
        if self.kind == "unreadable":
            return True
        if self.kind != "directory":
            return False
        want = needed_bits(permission, True)
        return access_class(user, FileInfo(self.mode, self.uid, self.gid, self.acl), want)[1] & want != want

    def explain(self, user: PosixUser, permission: str) -> str:
        """Operator-readable sentence on why this boundary refuses ``permission`` to ``user``."""
        if self.kind == "unreadable":
            return f"{self.path} could not be scanned, so nothing below it can be vouched for"
        if self.kind == "symlink":
            where = self.target if self.target is not None else "outside the storage root"
            return f"{self.path} is a symbolic link leading to {where}, outside the granted directory"
        want = needed_bits(permission, True)
        klass, bits = access_class(user, FileInfo(self.mode, self.uid, self.gid, self.acl), want)
        return (f"no {bit_words(want & ~bits)} permission on {self.path} for user {user.name} "
                f"({klass} class, mode {self.mode:04o}, owner {self.uid} group {self.gid}"
                f"{', with ACL' if self.acl is not None else ''})")

    def describe(self) -> str:
        if self.kind == "symlink":
            return f"{self.path}  symlink -> {self.target or '(outside the storage root)'}"
        if self.kind == "unreadable":
            return f"{self.path}  unreadable (not scanned)"
        acl = "  +acl" if self.acl is not None else ""
        return f"{self.path}  owner {self.uid} group {self.gid} mode {self.mode:04o}{acl}"


def _within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


class _DenialLists:
    """For one access kind (r+x or w+x): which boundaries lack it, by the class that would decide.

    A plain directory denies user U iff U owns it and the owner bits lack the access, or U does
    not own it, its group is one of U's and the group bits lack it, or neither and the other bits
    lack it. So: owner-denials by uid, group-denials by gid, other-denials in one list with a
    pointer to the next entry of another gid (to skip, in one step, a run of U's group's
    directories), and ACL'd or unreadable directories, which are judged one by one.
    """

    def __init__(self, boundaries: list[Boundary], want: int) -> None:
        self.by_owner: dict[int, list[int]] = {}
        self.by_group: dict[int, list[int]] = {}
        self.other: list[int] = []
        self.special: list[int] = []
        for i, b in enumerate(boundaries):
            if b.kind == "unreadable" or (b.kind == "directory" and b.acl is not None):
                self.special.append(i)
            elif b.kind == "directory":
                if (b.mode >> 6) & want != want:
                    self.by_owner.setdefault(b.uid, []).append(i)
                if (b.mode >> 3) & want != want:
                    self.by_group.setdefault(b.gid, []).append(i)
                if b.mode & want != want:
                    self.other.append(i)
        self.other_gid = [boundaries[i].gid for i in self.other]
        self.next_run = [len(self.other)] * len(self.other)
        for k in range(len(self.other) - 2, -1, -1):
            same = self.other_gid[k + 1] == self.other_gid[k]
            self.next_run[k] = self.next_run[k + 1] if same else k + 1

    def first(self, boundaries: list[Boundary], lo: int, hi: int, user: PosixUser, permission: str) -> int:
        """Smallest position in [lo, hi) that denies ``user``; ``hi`` if none."""
        best = hi
        owned = self.by_owner.get(user.uid)
        if owned:
            k = bisect_left(owned, lo)
            if k < len(owned) and owned[k] < best:
                best = owned[k]
        for gid in user.gids:
            positions = self.by_group.get(gid)
            if positions:
                for k in range(bisect_left(positions, lo), len(positions)):
                    if positions[k] >= best:
                        break
                    if boundaries[positions[k]].uid != user.uid:
                        best = positions[k]
                        break
        other, other_gid, gids = self.other, self.other_gid, user.gids
        k = bisect_left(other, lo)
        while k < len(other) and other[k] < best:
            if other_gid[k] in gids:
                k = self.next_run[k]
            elif boundaries[other[k]].uid == user.uid:
                k += 1
            else:
                best = other[k]
                break
        special = self.special
        for k in range(bisect_left(special, lo), len(special)):
            if special[k] >= best:
                break
            if boundaries[special[k]].denies(user, permission):
                best = special[k]
                break
        return best


class TreeIndex:
    """Boundaries of one tree, sorted by path, answering :meth:`first_denial` quickly.

    Boundaries below a path are a contiguous range of the sorted list; per access kind a
    :class:`_DenialLists` finds the first one in a range that denies a given user with a few
    bisections, however many boundaries the range holds.
    """

    def __init__(self, root: str, boundaries: list[Boundary], scanned_at: float | None = None,
                 directories: int = 0) -> None:
        self.root = root
        self.scanned_at = time.time() if scanned_at is None else scanned_at
        self.directories = directories
        self._boundaries = sorted(boundaries, key=lambda b: b.path)
        self._paths = [b.path for b in self._boundaries]
        self._unreadable = {b.path: b for b in self._boundaries if b.kind == "unreadable"}
        self._links = [i for i, b in enumerate(self._boundaries) if b.kind == "symlink"]
        self._denials = {want: _DenialLists(self._boundaries, want)
                         for want in {needed_bits(p, True) for p in ("read", "create")}}

    def __iter__(self) -> Iterator[Boundary]:
        return iter(self._boundaries)

    def __len__(self) -> int:
        return len(self._boundaries)

    def first_denial(self, path: str, user: PosixUser, permission: str) -> Boundary | None:
        """The first boundary at or below scope ``path`` denying a recursive ``permission``.

        Read and stage need r and x on every directory below, create and modify w and x; an
        unreadable directory always denies; a symbolic link denies when its target is outside
        ``path``; so does an unreadable directory above ``path`` (its subtree was never seen).
        ``path`` itself is judged only if it is a boundary: ``check_access`` checks it live.
        ``None`` means nothing below ``path`` refuses.
        """
        want = needed_bits(permission, True)
        path = path.rstrip("/") or "/"
        if self._unreadable:
            above = path
            while above != "/":
                above = above.rsplit("/", 1)[0] or "/"
                if above in self._unreadable:
                    return self._unreadable[above]
        if path == "/":
            lo, hi = 0, len(self._paths)
        else:
            lo = bisect_left(self._paths, path)
            # "0" follows "/": [path + "/", path + "0") is exactly the subtree below path.
            below, hi = bisect_left(self._paths, path + "/"), bisect_left(self._paths, path + "0")
            for i in range(lo, below):  # path itself (siblings like path-x lie in between)
                b = self._boundaries[i]
                if b.path == path and b.kind != "symlink" and b.denies(user, permission):
                    return b
            lo = below
        first: int | None = self._denials[want].first(self._boundaries, lo, hi, user, permission)
        first = None if first == hi else first
        links = self._links
        for k in range(bisect_left(links, lo), len(links)):
            i = links[k]
            if i >= hi or (first is not None and i > first):
                break
            b = self._boundaries[i]
            if b.target is None or not _within(b.target, path):
                first = i
                break
        return None if first is None else self._boundaries[first]

    def describe(self) -> Iterator[str]:
        """Lines for ``scitoken-issuer scan-tree``: a header, then one line per boundary."""
        yield (f"# {self.root}: {self.directories} directories scanned, {len(self)} boundaries, "
               f"at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.scanned_at))}")
        for b in self._boundaries:
            yield b.describe()

    def to_json(self) -> str:
        """A compact JSON document, for Redis or a file; :meth:`from_json` reads it back."""
        rows = [[b.path, b.kind, b.uid, b.gid, b.mode, b.target,
                 None if b.acl is None else [list(e) for e in b.acl]] for b in self._boundaries]
        return json.dumps({"format": FORMAT, "version": VERSION, "root": self.root,
                           "scanned_at": self.scanned_at, "directories": self.directories,
                           "boundaries": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> TreeIndex:
        """Rebuild an index from :meth:`to_json`; ``ValueError`` if it is not one."""
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise ValueError("not a tree index of a known version")
            boundaries = [
                Boundary(str(p), str(k), int(u), int(g), int(m), None if t is None else str(t),
                         None if a is None else tuple((int(x), int(y), int(z)) for x, y, z in a))
                for p, k, u, g, m, t, a in doc["boundaries"]
            ]
            return cls(str(doc["root"]), boundaries, float(doc["scanned_at"]), int(doc["directories"]))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed tree index: {exc}") from exc


def scan_tree(root: str, max_directories: int = DEFAULT_MAX_DIRECTORIES) -> TreeIndex:
    """Walk the tree under ``root`` once, without following symlinks, and index its boundaries.

    Directories that cannot be listed become ``unreadable`` boundaries instead of failing the scan.
    Raises :class:`TreeScanError` if ``root`` is not a directory or the tree has more than
    ``max_directories`` directories (an index that stops half way would vouch for unseen parts).
    """
    started = time.monotonic()
    root_real = os.path.realpath(root)
    try:
        info = read_info(root_real)
    except OSError as exc:
        raise TreeScanError(f"cannot scan {root}: {exc.strerror}") from exc
    if not stat_mod.S_ISDIR(info.mode):
        raise TreeScanError(f"cannot scan {root}: not a directory")
    boundaries = [Boundary("/", "directory", info.uid, info.gid, stat_mod.S_IMODE(info.mode), None, info.acl)]
    stack = [(root_real, "/", info)]
    count = 1
    while stack:
        host, scoped, own = stack.pop()
        prefix = "" if scoped == "/" else scoped
        try:
            with os.scandir(host) as entries:
                children = list(entries)
        except OSError as exc:
            logger.warning("scan-tree: cannot list %s: %s", host, exc.strerror)
            boundaries.append(Boundary(scoped, "unreadable", own.uid, own.gid, stat_mod.S_IMODE(own.mode)))
            continue
        for entry in children:
            child_scoped = f"{prefix}/{entry.name}"
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    target = None
                    if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
                        target = real[len(root_real.rstrip("/")):] or "/"
                    if target is None or not _within(target, scoped):
                        boundaries.append(Boundary(child_scoped, "symlink", target=target))
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                child = read_info(entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished while we looked
            count += 1
            if count > max_directories:
                raise TreeScanError(f"{root} has more than {max_directories} directories")
            if (child.uid, child.gid, stat_mod.S_IMODE(child.mode), child.acl) != (
                    own.uid, own.gid, stat_mod.S_IMODE(own.mode), own.acl):
                boundaries.append(Boundary(child_scoped, "directory", child.uid, child.gid,
                                           stat_mod.S_IMODE(child.mode), None, child.acl))
            stack.append((entry.path, child_scoped, child))
    logger.info("scan-tree %s: %d directories, %d boundaries in %.1fs", root, count,
                len(boundaries), time.monotonic() - started)
    return TreeIndex(root_real, boundaries, time.time(), count)
