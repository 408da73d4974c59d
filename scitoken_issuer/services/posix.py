"""The live POSIX decision for one storage permission on one path (docs/authorization.md).

``check_access`` answers "may this user have ``storage.<perm>:<path>``?" by looking at the real
filesystem under ``POSIX_PATH`` the way the kernel would for that user, and says why not in words
an operator (and the client, in ``invalid_scope``) can act on. Paths in reasons are scope paths
(relative to ``POSIX_PATH``), never host paths. The rule itself (classes, ACLs, needed bits, the
sentence) lives in :mod:`.posix_rule`; strict mode asks a :class:`~.posix_rule.SubtreeCheck`:
the tree index, or :class:`LiveSubtree`, which walks the subtree on disk.
"""

from __future__ import annotations

import heapq
import logging
import os
import stat as stat_mod
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from .posix_rule import (R, W, X, Boundary, FileInfo, SubtreeCheck, access_class, explain, is_under,
                         needed_bits, read_info, scope_path)
from .scope_verbs import Profile
from .scopes import Scope, ScopeError, storage_permissions, validate_path
from .users import PosixUser

logger = logging.getLogger(__name__)

MAX_SYMLINK_HOPS = 40  # the kernel's ELOOP limit


@dataclass(frozen=True)
class Decision:
    """The answer for one (user, permission, path), with what decided it.

    ``checked`` is the scope path of the inode that decided (target, nearest existing ancestor,
    the ancestor that cannot be traversed, or the strict-mode boundary), ``access_class`` the class
    that applied, ``missing`` the bits that were lacking, ``step`` the rule of docs/authorization.md that refused.
    """

    granted: bool
    reason: str
    user: str
    permission: str
    path: str
    checked: str | None = None
    access_class: str | None = None
    missing: str | None = None
    mode: int | None = None
    owner: int | None = None
    group: int | None = None
    step: int | None = None
    exists: bool = True


class StatCache:
    """A small LRU of :func:`read_info` answers, each kept ``ttl`` seconds; thread safe.

    Trades up to ``ttl`` seconds of staleness for fewer syscalls; pass one to :func:`check_access`
    only where that staleness is acceptable (it is bounded like ``GROUP_CACHE_TTL``).
    """

    def __init__(self, ttl: float = 2.0, maxsize: int = 65536) -> None:
        self.ttl, self.maxsize = ttl, maxsize
        self._data: OrderedDict[str, tuple[float, FileInfo | OSError]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, path: str) -> FileInfo:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(path)
            if hit is not None and hit[0] > now:
                self._data.move_to_end(path)
                value = hit[1]
                if isinstance(value, OSError):
                    raise type(value)(value.errno, value.strerror, path)
                return value
        try:
            value: FileInfo | OSError = read_info(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            value = exc
        with self._lock:
            self._data[path] = (now + self.ttl, value)
            self._data.move_to_end(path)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        if isinstance(value, OSError):
            raise value
        return value


@lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def check_access(
    root: str,
    user: PosixUser,
    permission: str,
    path: str,
    index: SubtreeCheck | None = None,
    stat_cache: StatCache | None = None,
) -> Decision:
    """Decide whether ``user`` may have WLCG ``permission`` on scope ``path`` under ``root``.

    The rules of docs/authorization.md: (1) ``path`` is valid and, joined under ``root`` with
    symlinks resolved, stays inside it; (2) the target, or its nearest existing ancestor, grants
    the permission; (3) every directory walked through, ``root`` included, grants x; (4) with
    ``index`` (strict mode: the tree index or :class:`LiveSubtree`), no entry at or below the
    target denies what the recursive scope grants.
    """
    needed_bits(permission, True)  # unknown permission: a programming error, raise early
    lookup = stat_cache or read_info

    exists = True

    def refuse(reason: str, step: int, **details: object) -> Decision:
        details.setdefault("exists", exists)
        return Decision(False, reason, user.name, permission, path, step=step, **details)  # type: ignore[arg-type]

    try:
        validate_path(path)
    except ScopeError as exc:
        return refuse(str(exc), 1)
    root_real = _real_root(root)
    try:
        info = lookup(root_real)
    except OSError as exc:
        logger.error("POSIX_PATH %s cannot be examined: %s", root, exc)
        return refuse("the storage root cannot be examined", 1)
    if not stat_mod.S_ISDIR(info.mode):
        return refuse("the storage root is not a directory", 1)
    if index is not None and _real_root(index.root) != root_real:
        return refuse("the strict-mode index was built for another storage root", 4)
    root_info = info

    pending = [p for p in reversed(path.split("/")) if p]
    current, hops = root_real, 0
    while pending:
        name = pending.pop()
        klass, bits = access_class(user, info, X)
        if not bits & X:  # rule 3, before looking inside: what lies beyond a directory U cannot
            # traverse (whether a name exists, is a file or a link) never shapes the answer
            shown = scope_path(current, root_real)
            return refuse(explain(X, shown, user, klass, info), 3, **_details(shown, klass, X, info))
        candidate = f"{current}/{name}" if current != "/" else f"/{name}"
        try:
            child = lookup(candidate)
        except (FileNotFoundError, NotADirectoryError):
            pending.append(name)
            exists = False  # the nearest existing ancestor is judged as the target
            break
        except OSError as exc:
            return refuse(f"{scope_path(candidate, root_real)} cannot be examined: {exc.strerror}", 1)
        if stat_mod.S_ISLNK(child.mode):
            hops += 1
            real = os.path.realpath(candidate)
            if hops > MAX_SYMLINK_HOPS:
                return refuse(f"too many symbolic links under {path}", 1)
            if not is_under(real, root_real):
                return refuse(f"{scope_path(candidate, root_real)} is a symbolic link leading "
                              "outside the storage root", 1, checked=scope_path(candidate, root_real))
            pending.extend(reversed([p for p in real[len(root_real):].split("/") if p]))
            current, info = root_real, root_info
            continue
        if pending and not stat_mod.S_ISDIR(child.mode):
            return refuse(f"{scope_path(candidate, root_real)} is not a directory", 1,
                          checked=scope_path(candidate, root_real))
        current, info = candidate, child

    want = needed_bits(permission, stat_mod.S_ISDIR(info.mode))  # rule 2
    klass, bits = access_class(user, info, want)
    shown = scope_path(current, root_real)
    if bits & want != want:
        return refuse(explain(want & ~bits, shown, user, klass, info), 2,
                      **_details(shown, klass, want & ~bits, info))

    if index is not None:  # rule 4
        target = "/".join([shown.rstrip("/"), *reversed(pending)]) or "/"
        boundary = index.first_denial(target, user, permission)
        if boundary is not None:
            where = "at" if boundary.path == target else "below"
            return refuse(f"strict mode: {boundary.explain(user, permission)}, {where} {path}", 4,
                          checked=boundary.path, mode=boundary.mode,
                          owner=boundary.uid, group=boundary.gid)
    where = path if exists else f"{path} (judged on {shown}, the nearest existing directory)"
    return Decision(True, f"{permission} granted on {where} to user {user.name} ({klass} class)",
                    user.name, permission, path, checked=shown, access_class=klass,
                    mode=stat_mod.S_IMODE(info.mode), owner=info.uid, group=info.gid, exists=exists)


def _details(shown: str, klass: str, missing: int, info: FileInfo) -> dict[str, object]:
    return {"checked": shown, "access_class": klass, "missing": "".join(
        c for b, c in ((R, "r"), (W, "w"), (X, "x")) if missing & b),
        "mode": stat_mod.S_IMODE(info.mode), "owner": info.uid, "group": info.gid}


def check_scope(
    root: str,
    user: PosixUser,
    scope: Scope,
    index: SubtreeCheck | None = None,
    stat_cache: StatCache | None = None,
    profile: Profile | None = None,
) -> Decision:
    """Check every WLCG permission a storage scope needs in a ``profile`` token (docs/scopes.md;
    ``None``: either profile); the first refusal, or the last grant."""
    perms = storage_permissions(scope, profile)
    if not perms or scope.path is None:
        raise ValueError(f"not a storage scope: {scope.raw}")
    decision: Decision | None = None
    for perm in perms:
        decision = check_access(root, user, perm, scope.path, index, stat_cache)
        if not decision.granted:
            break
    assert decision is not None
    return decision


class LiveSubtree:
    """Strict mode without an index: walk the subtree below a scope path on disk (rule 4).

    Visits entries in the index's order (sorted scope paths), so it names the same first denial
    as :meth:`TreeIndex.first_denial` would; each entry is judged by :meth:`Boundary.denies`, the
    one rule. Its cost grows with the subtree, so the app uses the index; this is the reference
    the index is tested against, and the strict check of a ``ScopePolicy`` built without one.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def first_denial(self, path: str, user: PosixUser, permission: str) -> Boundary | None:
        """The first entry at or below scope ``path`` that denies a recursive ``permission``."""
        root_real = _real_root(self.root)
        top = root_real if path == "/" else (path if root_real == "/" else root_real + path)
        try:
            info = read_info(top)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not created yet: nothing below it
        if not stat_mod.S_ISDIR(info.mode):
            entry = Boundary(path, "file", info.uid, info.gid, stat_mod.S_IMODE(info.mode), None, info.acl)
            return entry if entry.denies(user, permission) else None
        queue: list[tuple[str, int, str, FileInfo | Boundary]] = [(path, 0, top, info)]
        seq = 0
        while queue:  # a heap by scope path: a directory's entries follow it, in global order
            scoped, _, host, item = heapq.heappop(queue)
            if isinstance(item, Boundary):
                return item  # a file or link found denying while its directory was listed
            own = Boundary(scoped, "directory", item.uid, item.gid, stat_mod.S_IMODE(item.mode), None, item.acl)
            if own.denies(user, permission):
                return own
            sticky, owners = bool(item.mode & stat_mod.S_ISVTX), set()
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
                                if target is None or not is_under(target, path):
                                    seq += 1
                                    heapq.heappush(queue, (child_scoped, seq, "",
                                                           Boundary(child_scoped, "symlink", target=target)))
                                continue
                            child = read_info(entry.path)
                        except (FileNotFoundError, NotADirectoryError):
                            continue  # vanished while we looked
                        if sticky and len(owners) < 2:
                            owners.add(child.uid)
                        seq += 1
                        if stat_mod.S_ISDIR(child.mode):
                            heapq.heappush(queue, (child_scoped, seq, entry.path, child))
                            continue
                        found = Boundary(child_scoped, "file", child.uid, child.gid,
                                         stat_mod.S_IMODE(child.mode), None, child.acl)
                        if found.denies(user, permission):
                            heapq.heappush(queue, (child_scoped, seq, "", found))
            except OSError:
                return Boundary(scoped, "unreadable", item.uid, item.gid, stat_mod.S_IMODE(item.mode))
            own = Boundary(own.path, own.kind, own.uid, own.gid, own.mode, None, own.acl, tuple(sorted(owners)))
            if own.sticky_denies(user, permission):
                return own
        return None
