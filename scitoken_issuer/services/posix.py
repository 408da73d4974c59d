"""The POSIX decision for one storage permission on one path (SPEC §7 steps 1–4).

``check_access`` answers "may this user have ``storage.<perm>:<path>``?" by looking at the real
filesystem under ``POSIX_PATH`` the way the kernel would for that user, and says why not in words
an operator (and the client, in ``invalid_scope``) can act on. Paths in reasons are scope paths
(relative to ``POSIX_PATH``), never host paths.

There is no root bypass: uid 0 is judged by the same owner/group/other bits as everybody else,
because the storage service acts on the token alone and must not hand out root's powers.
POSIX ACLs (``system.posix_acl_access``) are evaluated as the Linux kernel does, so a named-user
entry that takes rights away is honoured rather than overlooked.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from scitoken_issuer.services.scopes import Scope, ScopeError, storage_permissions, validate_path
from scitoken_issuer.services.users import PosixUser

if TYPE_CHECKING:
    from scitoken_issuer.services.tree_index import TreeIndex

logger = logging.getLogger(__name__)

R, W, X = 4, 2, 1
MAX_SYMLINK_HOPS = 40  # the kernel's ELOOP limit
_BIT_NAMES = {R: "read", W: "write", X: "traverse (x)"}
# (bits on a directory, bits on anything else) each WLCG permission needs — SPEC §7 step 2.
_NEEDS = {
    "read": (R | X, R),
    "stage": (R | X, R),
    "create": (W | X, W),
    "modify": (W | X, W),
    "write": (W | X, W),
}
_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 1, 2, 4, 8, 16, 32

Acl = tuple[tuple[int, int, int], ...]  # (tag, perm, id) entries, as stored by Linux


class FileInfo(NamedTuple):
    """What the decision needs from one inode: ``lstat`` fields and its access ACL, if any."""

    mode: int
    uid: int
    gid: int
    acl: Acl | None = None


def parse_acl(blob: bytes) -> Acl | None:
    """Decode a Linux ``system.posix_acl_access`` value (version 2); ``None`` if unparseable."""
    if len(blob) < 4 or (len(blob) - 4) % 8 or int.from_bytes(blob[:4], "little") != 2:
        return None
    return tuple(
        (tag, perm & 7, ident)
        for tag, perm, ident in (struct.unpack_from("<HHI", blob, off) for off in range(4, len(blob), 8))
    )


def read_info(path: str) -> FileInfo:
    """``lstat`` plus the access ACL of ``path``; raises ``OSError`` as ``os.lstat`` does."""
    st = os.lstat(path)
    acl = None
    if not stat_mod.S_ISLNK(st.st_mode):
        try:
            acl = parse_acl(os.getxattr(path, _ACL_XATTR, follow_symlinks=False))
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
                raise
    return FileInfo(st.st_mode, st.st_uid, st.st_gid, acl)


def access_class(user: PosixUser, info: FileInfo, want: int) -> tuple[str, int]:
    """Which class decides for ``user`` and the bits it grants towards ``want`` (SPEC §7 step 2).

    Owner bits if the user owns the inode, else group bits if its group is one of the user's,
    else other bits — the same for uid 0. With an ACL, the kernel's order: owner, named user
    (masked), owning/named groups (masked; any one entry must grant all of ``want``), other.
    """
    mode = info.mode
    if info.acl is None:
        if user.uid == info.uid:
            return "owner", (mode >> 6) & 7
        if info.gid in user.gids:
            return "group", (mode >> 3) & 7
        return "other", mode & 7
    if user.uid == info.uid:
        return "owner", (mode >> 6) & 7
    # With an ACL the group bits of the mode are the mask (or the owning group without a mask).
    has_mask = any(t == _ACL_MASK for t, _, _ in info.acl)
    mask = (mode >> 3) & 7 if has_mask else 7
    for tag, perm, ident in info.acl:
        if tag == _ACL_USER and ident == user.uid:
            return "ACL user", perm & mask
    found, best = False, 0
    for tag, perm, ident in info.acl:
        owning = tag == _ACL_GROUP_OBJ and info.gid in user.gids
        if owning or (tag == _ACL_GROUP and ident in user.gids):
            found = True
            if owning and not has_mask:
                perm = (mode >> 3) & 7
            if perm & mask & want == want:
                return "ACL group", perm & mask
            # Linux wants one entry granting all of ``want``; report the closest one.
            if bin(perm & mask & want).count("1") > bin(best & want).count("1"):
                best = perm & mask
    if found:
        return "ACL group", best
    return "other", mode & 7


def needed_bits(permission: str, is_dir: bool) -> int:
    """The r/w/x bits ``permission`` needs on a directory or on a file (SPEC §7 step 2)."""
    try:
        on_dir, on_file = _NEEDS[permission]
    except KeyError:
        raise ValueError(f"unknown storage permission {permission!r}") from None
    return on_dir if is_dir else on_file


def bit_words(bits: int) -> str:
    return " and ".join(_BIT_NAMES[b] for b in (R, W, X) if bits & b)


@dataclass(frozen=True)
class Decision:
    """The answer for one (user, permission, path), with what decided it.

    ``checked`` is the scope path of the inode that decided (target, nearest existing ancestor,
    the ancestor that cannot be traversed, or the strict-mode boundary), ``access_class`` the class
    that applied, ``missing`` the bits that were lacking, ``step`` the SPEC §7 step that refused.
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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/") or root == "/"


def _scope_path(host: str, root: str) -> str:
    if root == "/":
        return host
    return host[len(root):] or "/"


def check_access(
    root: str,
    user: PosixUser,
    permission: str,
    path: str,
    index: TreeIndex | None = None,
    stat_cache: StatCache | None = None,
) -> Decision:
    """Decide whether ``user`` may have WLCG ``permission`` on scope ``path`` under ``root``.

    SPEC §7: (1) ``path`` is valid and, joined under ``root`` with symlinks resolved, stays inside
    it; (2) the target, or its nearest existing ancestor, grants the permission; (3) every
    directory walked through, ``root`` included, grants x; (4) with ``index`` (strict mode), no
    directory below the target denies what the recursive scope grants.
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

    walked: dict[str, FileInfo] = {}  # directories that must grant x, in walk order
    pending = [p for p in reversed(path.split("/")) if p]
    current, hops = root_real, 0
    while pending:
        name = pending.pop()
        walked.setdefault(current, info)
        candidate = f"{current}/{name}" if current != "/" else f"/{name}"
        try:
            child = lookup(candidate)
        except (FileNotFoundError, NotADirectoryError):
            pending.append(name)
            exists = False
            del walked[current]  # the nearest existing ancestor is judged as the target
            break
        except OSError as exc:
            return refuse(f"{_scope_path(candidate, root_real)} cannot be examined: {exc.strerror}", 1)
        if stat_mod.S_ISLNK(child.mode):
            hops += 1
            real = os.path.realpath(candidate)
            if hops > MAX_SYMLINK_HOPS:
                return refuse(f"too many symbolic links under {path}", 1)
            if not _inside(real, root_real):
                return refuse(f"{_scope_path(candidate, root_real)} is a symbolic link leading "
                              "outside the storage root", 1, checked=_scope_path(candidate, root_real))
            pending.extend(reversed([p for p in real[len(root_real):].split("/") if p]))
            current, info = root_real, root_info
            continue
        if pending and not stat_mod.S_ISDIR(child.mode):
            return refuse(f"{_scope_path(candidate, root_real)} is not a directory", 1,
                          checked=_scope_path(candidate, root_real))
        current, info = candidate, child

    for directory, dir_info in walked.items():  # SPEC §7 step 3
        klass, bits = access_class(user, dir_info, X)
        if not bits & X:
            shown = _scope_path(directory, root_real)
            return refuse(_explain(X, shown, user, klass, dir_info), 3, **_details(shown, klass, X, dir_info))

    want = needed_bits(permission, stat_mod.S_ISDIR(info.mode))  # SPEC §7 step 2
    klass, bits = access_class(user, info, want)
    shown = _scope_path(current, root_real)
    if bits & want != want:
        return refuse(_explain(want & ~bits, shown, user, klass, info), 2,
                      **_details(shown, klass, want & ~bits, info))

    if index is not None:  # SPEC §7 step 4
        target = "/".join([shown.rstrip("/"), *reversed(pending)]) or "/"
        boundary = index.first_denial(target, user, permission)
        if boundary is not None:
            return refuse(f"strict mode: {boundary.explain(user, permission)}, below {path}", 4,
                          checked=boundary.path, mode=boundary.mode,
                          owner=boundary.uid, group=boundary.gid)
    where = path if exists else f"{path} (judged on {shown}, the nearest existing directory)"
    return Decision(True, f"{permission} granted on {where} to user {user.name} ({klass} class)",
                    user.name, permission, path, checked=shown, access_class=klass,
                    mode=stat_mod.S_IMODE(info.mode), owner=info.uid, group=info.gid, exists=exists)


def _explain(missing: int, shown: str, user: PosixUser, klass: str, info: FileInfo) -> str:
    acl = ", with ACL" if info.acl is not None else ""
    return (f"no {bit_words(missing)} permission on {shown} for user {user.name} ({klass} class, "
            f"mode {stat_mod.S_IMODE(info.mode):04o}, owner {info.uid} group {info.gid}{acl})")


def _details(shown: str, klass: str, missing: int, info: FileInfo) -> dict[str, object]:
    return {"checked": shown, "access_class": klass, "missing": "".join(
        c for b, c in ((R, "r"), (W, "w"), (X, "x")) if missing & b),
        "mode": stat_mod.S_IMODE(info.mode), "owner": info.uid, "group": info.gid}


def check_scope(
    root: str,
    user: PosixUser,
    scope: Scope,
    index: TreeIndex | None = None,
    stat_cache: StatCache | None = None,
) -> Decision:
    """Check every WLCG permission a storage scope needs; the first refusal, or the last grant."""
    perms = storage_permissions(scope)
    if not perms or scope.path is None:
        raise ValueError(f"not a storage scope: {scope.raw}")
    decision: Decision | None = None
    for perm in perms:
        decision = check_access(root, user, perm, scope.path, index, stat_cache)
        if not decision.granted:
            break
    assert decision is not None
    return decision
