"""Strict mode (docs/authorization.md, rule 4): an index of the entries that may deny more than
their directory allows.

WLCG storage scopes are recursive and storage services trust the token alone, so
``storage.read:/data`` must not be granted when some entry below ``/data`` would deny the user.
Walking the whole subtree per request is far too slow; instead :func:`scan_tree` walks the tree
once (a Celery task, or ``scitoken-issuer scan-tree``) and records only:

- directories whose owner, group, mode or ACL differ from their parent's (every other directory
  has its parent's permissions, so it denies exactly whom its parent denies);
- files (anything not a directory or a link) that deny some user what their directory grants
  (``posix_rule.denies_more``), one entry per directory and (owner, group, mode, ACL): the first
  such file by name, standing for the others alike. Under an ordinary umask no file denies more
  than its directory, so a large tree adds nothing;
- sticky directories holding entries (nobody but an entry's or the directory's owner may delete
  or rename them, which ``modify`` includes);
- directories that could not be listed (nothing below them can be vouched for: always a denial);
- symbolic links whose target lies outside their own directory (a storage service following one
  serves data from outside the granted subtree; a denial unless the target is inside the query).

Why that is enough: an entry not recorded denies a user only where its directory does, and so on
up to a recorded entry or the scope's target, which ``check_access`` checks live. The first
recorded denial in path order is therefore the first denial of all, the one a full walk
(``posix.LiveSubtree``) finds. The index is a snapshot: refresh it on a schedule.
"""

from __future__ import annotations

import json
import logging
import os
import stat as stat_mod
import time
from bisect import bisect_left
from collections.abc import Iterator

from .denial_lists import DenialLists
from .posix_rule import Boundary, FileInfo, denies_more, is_under, needed_below, read_info, scope_path
from .users import PosixUser

logger = logging.getLogger(__name__)

FORMAT = "scitoken-issuer-tree-index"
VERSION = 2
DEFAULT_MAX_DIRECTORIES = 10_000_000
# Each permission asks the same of entries below as one of these three (stage as read, write as modify).
_BELOW_AS = {"read": "read", "stage": "read", "create": "create", "modify": "modify", "write": "modify"}

__all__ = ["Boundary", "TreeIndex", "TreeScanError", "scan_tree"]


class TreeScanError(RuntimeError):
    """The tree could not be indexed as a whole (root missing, or too large)."""


class TreeIndex:
    """Recorded entries (boundaries) of one tree, sorted by path, answering :meth:`first_denial`.

    Entries below a path are a contiguous range of the sorted list; per permission a
    :class:`DenialLists` finds the first one in a range that denies a given user with a few
    bisections, however many entries the range holds.
    """

    def __init__(self, root: str, boundaries: list[Boundary], scanned_at: float | None = None,
                 directories: int = 0, files: int = 0) -> None:
        self.root = root
        self.scanned_at = time.time() if scanned_at is None else scanned_at
        self.directories = directories
        self.files = files
        self._boundaries = sorted(boundaries, key=lambda b: b.path)
        self._paths = [b.path for b in self._boundaries]
        self._unreadable = {b.path: b for b in self._boundaries if b.kind == "unreadable"}
        self._links = [i for i, b in enumerate(self._boundaries) if b.kind == "symlink"]
        self._denials = {p: DenialLists(self._boundaries, p) for p in set(_BELOW_AS.values())}

    def __iter__(self) -> Iterator[Boundary]:
        return iter(self._boundaries)

    def __len__(self) -> int:
        return len(self._boundaries)

    def first_denial(self, path: str, user: PosixUser, permission: str) -> Boundary | None:
        """The first recorded entry at or below scope ``path`` denying a recursive ``permission``.

        Each entry is judged by ``Boundary.denies`` (what the permission needs on a directory or a
        file below, and the sticky rule for modify); an unreadable directory always denies; a
        symbolic link denies when its target is outside ``path``; so does an unreadable directory
        above ``path`` (its subtree was never seen). ``path`` itself is judged only if recorded:
        ``check_access`` checks it live. ``None`` means nothing below ``path`` refuses.
        """
        below_as = _BELOW_AS.get(permission)
        if below_as is None:
            needed_below(permission, True)  # raises ValueError: an unknown permission
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
        first: int | None = self._denials[below_as].first(self._boundaries, lo, hi, user, permission)
        first = None if first == hi else first
        links = self._links
        for k in range(bisect_left(links, lo), len(links)):
            i = links[k]
            if i >= hi or (first is not None and i > first):
                break
            b = self._boundaries[i]
            if b.target is None or not is_under(b.target, path):
                first = i
                break
        return None if first is None else self._boundaries[first]

    def describe(self) -> Iterator[str]:
        """Lines for ``scitoken-issuer scan-tree``: a header, then one line per boundary."""
        yield (f"# {self.root}: {self.directories} directories scanned, {len(self)} boundaries, "
               f"{self.files} files, at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.scanned_at))}")
        for b in self._boundaries:
            yield b.describe()

    def to_json(self) -> str:
        """A compact JSON document, for Redis or a file; :meth:`from_json` reads it back."""
        rows = [[b.path, b.kind, b.uid, b.gid, b.mode, b.target,
                 None if b.acl is None else [list(e) for e in b.acl], list(b.owners), b.alike]
                for b in self._boundaries]
        return json.dumps({"format": FORMAT, "version": VERSION, "root": self.root,
                           "scanned_at": self.scanned_at, "directories": self.directories,
                           "files": self.files, "boundaries": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> TreeIndex:
        """Rebuild an index from :meth:`to_json`; ``ValueError`` if it is not one."""
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT or doc.get("version") != VERSION:
                raise ValueError("not a tree index of a known version")
            boundaries = [
                Boundary(str(p), str(k), int(u), int(g), int(m), None if t is None else str(t),
                         None if a is None else tuple((int(x), int(y), int(z)) for x, y, z in a),
                         tuple(int(o) for o in owners), int(alike))
                for p, k, u, g, m, t, a, owners, alike in doc["boundaries"]
            ]
            return cls(str(doc["root"]), boundaries, float(doc["scanned_at"]), int(doc["directories"]),
                       int(doc["files"]))
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed tree index: {exc}") from exc


def scan_tree(root: str, max_directories: int = DEFAULT_MAX_DIRECTORIES) -> TreeIndex:
    """Walk the tree under ``root`` once, without following symlinks, and index what may deny.

    Streams: one ``os.scandir`` at a time, holding only the directories still to visit and the
    recorded entries. Directories that cannot be listed become ``unreadable`` entries instead of
    failing the scan. Raises :class:`TreeScanError` if ``root`` is not a directory or the tree has
    more than ``max_directories`` directories (an index that stops half way would vouch for
    unseen parts).
    """
    started = time.monotonic()
    root_real = os.path.realpath(root)
    try:
        info = read_info(root_real)
    except OSError as exc:
        raise TreeScanError(f"cannot scan {root}: {exc.strerror}") from exc
    if not stat_mod.S_ISDIR(info.mode):
        raise TreeScanError(f"cannot scan {root}: not a directory")
    boundaries: list[Boundary] = []
    stack = [(root_real, "/", info, True)]  # (host path, scope path, info, differs from its parent)
    directories, files = 1, 0
    while stack:
        host, scoped, own, differs = stack.pop()
        sticky, owners = bool(own.mode & stat_mod.S_ISVTX), set()
        denying: dict[tuple, list] = {}  # files denying more than this directory: signature -> [first name, count]
        prefix = "" if scoped == "/" else scoped
        try:
            with os.scandir(host) as entries:
                for entry in entries:
                    child_scoped = f"{prefix}/{entry.name}"
                    try:
                        if entry.is_symlink():
                            if sticky and len(owners) < 2:
                                owners.add(entry.stat(follow_symlinks=False).st_uid)
                            real = os.path.realpath(entry.path)
                            target = scope_path(real, root_real) if is_under(real, root_real) else None
                            if target is None or not is_under(target, scoped):
                                boundaries.append(Boundary(child_scoped, "symlink", target=target))
                            continue
                        child = read_info(entry.path)
                    except (FileNotFoundError, NotADirectoryError):
                        continue  # vanished while we looked
                    if sticky and len(owners) < 2:
                        owners.add(child.uid)
                    if stat_mod.S_ISDIR(child.mode):
                        directories += 1
                        if directories > max_directories:
                            raise TreeScanError(f"{root} has more than {max_directories} directories")
                        stack.append((entry.path, child_scoped, child, _signature(child) != _signature(own)))
                        continue
                    files += 1
                    if denies_more(own, child, False):
                        seen = denying.setdefault(_signature(child), [entry.name, 0])
                        seen[0], seen[1] = min(seen[0], entry.name), seen[1] + 1
        except OSError as exc:
            logger.warning("scan-tree: cannot list %s: %s", host, exc.strerror)
            if differs:
                boundaries.append(_entry(scoped, "directory", own))
            boundaries.append(Boundary(scoped, "unreadable", own.uid, own.gid, stat_mod.S_IMODE(own.mode)))
            continue
        if differs or (sticky and owners):
            boundaries.append(_entry(scoped, "directory", own, tuple(sorted(owners)) if sticky else ()))
        for (uid, gid, mode, acl), (name, count) in denying.items():
            boundaries.append(Boundary(f"{prefix}/{name}", "file", uid, gid, mode, None, acl, (), count - 1))
    logger.info("scan-tree %s: %d directories, %d files, %d boundaries in %.1fs", root, directories, files,
                len(boundaries), time.monotonic() - started)
    return TreeIndex(root_real, boundaries, time.time(), directories, files)


def _signature(info: FileInfo) -> tuple:
    return info.uid, info.gid, stat_mod.S_IMODE(info.mode), info.acl


def _entry(scoped: str, kind: str, info: FileInfo, owners: tuple[int, ...] = ()) -> Boundary:
    return Boundary(scoped, kind, info.uid, info.gid, stat_mod.S_IMODE(info.mode), None, info.acl, owners)
