"""The POSIX rule, written once (docs/authorization.md): what one inode grants one user.

This module owns the file information the rule reads (mode, owner, group, access ACL), the choice
of the deciding class (owner, ACL user, group/ACL group, other), the bits each storage permission
needs on a target and on every entry below it, the sticky-directory rule, "path is under
prefix", and the one sentence that explains a refusal. The live check (``posix``), the strict-mode
index (``tree_index``) and the client scope policy (``policy``) all decide through it; it imports
none of them.

There is no root bypass: uid 0 is judged by the same bits as everybody else, because the storage
service acts on the token alone and must not hand out root's powers.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

from .users import PosixUser

R, W, X = 4, 2, 1
_BIT_NAMES = {R: "read", W: "write", X: "traverse (x)"}
# (bits on a directory, bits on anything else) each permission needs on its target: rule 2.
_NEEDS = {
    "read": (R | X, R),
    "stage": (R | X, R),
    "create": (W | X, W),
    "modify": (W | X, W),
    "write": (W | X, W),
}
# ... and on every entry below a recursive scope: rule 4 (strict mode). ``create`` only makes new
# entries, so existing files need nothing; ``write`` (SciTokens) is create and modify together.
_NEEDS_BELOW = {
    "read": (R | X, R),
    "stage": (R | X, R),
    "create": (W | X, 0),
    "modify": (W | X, W),
    "write": (W | X, W),
}
# Permissions that delete or rename existing entries, which a sticky directory restricts.
REPLACING = frozenset({"modify", "write"})

_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 1, 2, 4, 8, 16, 32

Acl = tuple[tuple[int, int, int], ...]  # (tag, perm, id) entries, as stored by Linux


def is_under(path: str, prefix: str) -> bool:
    """Whether absolute ``path`` is ``prefix`` or below it (``/data/ana-x`` is not under ``/data/ana``)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def scope_path(host: str, root: str) -> str:
    """The scope path of host path ``host``, which lies under the real storage root ``root``."""
    if root == "/":
        return host
    return host[len(root):] or "/"


class FileInfo(NamedTuple):
    """What the rule needs from one inode: ``lstat`` fields and its access ACL, if any."""

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
    """Which class decides for ``user`` and the bits it grants towards ``want``.

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


def grants(user: PosixUser, info: FileInfo, want: int) -> bool:
    """Whether ``info`` grants ``user`` every bit of ``want`` (nothing wanted: always)."""
    return access_class(user, info, want)[1] & want == want


def needed_bits(permission: str, is_dir: bool) -> int:
    """The r/w/x bits ``permission`` needs on its target, a directory or not (rule 2)."""
    try:
        on_dir, on_file = _NEEDS[permission]
    except KeyError:
        raise ValueError(f"unknown storage permission {permission!r}") from None
    return on_dir if is_dir else on_file


def needed_below(permission: str, is_dir: bool) -> int:
    """The bits a recursive ``permission`` needs on each entry below its target (rule 4)."""
    try:
        on_dir, on_file = _NEEDS_BELOW[permission]
    except KeyError:
        raise ValueError(f"unknown storage permission {permission!r}") from None
    return on_dir if is_dir else on_file


def sticky_denies(user: PosixUser, dir_uid: int, owners: tuple[int, ...]) -> bool:
    """Whether a sticky directory owned by ``dir_uid`` whose entries belong to ``owners`` keeps
    ``user`` from deleting or renaming one of them: the kernel lets only the entry's owner or the
    directory's owner do that (no root bypass here either)."""
    return user.uid != dir_uid and any(uid != user.uid for uid in owners)


def bit_words(bits: int) -> str:
    return " and ".join(_BIT_NAMES[b] for b in (R, W, X) if bits & b)


def explain(missing: int, shown: str, user: PosixUser, klass: str, info: FileInfo) -> str:
    """The one sentence saying which bits ``shown`` (a scope path) lacks for ``user``, and why."""
    acl = ", with ACL" if info.acl is not None else ""
    return (f"no {bit_words(missing)} permission on {shown} for user {user.name} ({klass} class, "
            f"mode {stat_mod.S_IMODE(info.mode):04o}, owner {info.uid} group {info.gid}{acl})")


@lru_cache(maxsize=4096)
def denies_more(parent: FileInfo, child: FileInfo, child_is_dir: bool) -> bool:
    """Whether some user is denied on ``child`` a permission that its directory ``parent`` grants.

    Exact: the rule only asks whether a user's uid equals an inode's or an ACL entry's and whether
    a gid is among the user's groups, so every user behaves like one of the combinations of the
    ids named by the two inodes (plus "none of them"). Too many ids to try: answer True (record).
    """
    uids, gids = {parent.uid, child.uid}, {parent.gid, child.gid}
    for info in (parent, child):
        for tag, _, ident in info.acl or ():
            if tag == _ACL_USER:
                uids.add(ident)
            elif tag == _ACL_GROUP:
                gids.add(ident)
    if len(gids) > 8 or len(uids) > 16:
        return True
    gid_list = sorted(gids)
    for uid in (*uids, -1):
        for combination in range(1 << len(gid_list)):
            member = frozenset(g for i, g in enumerate(gid_list) if combination >> i & 1)
            user = PosixUser("", uid, -1, member)
            for permission in ("read", "create", "modify"):
                if grants(user, parent, needed_below(permission, True)) and not grants(
                        user, child, needed_below(permission, child_is_dir)):
                    return True
    return False


@dataclass(frozen=True)
class Boundary:
    """One entry below which the strict-mode answer may change, by scope path (rule 4).

    ``kind`` is ``directory``, ``file`` (anything that is neither a directory nor a link),
    ``unreadable`` (a directory that could not be listed), or ``symlink`` (``target``: the scope
    path it resolves to, ``None`` if outside the root). ``owners`` holds, for a sticky directory,
    up to two distinct owners of its entries (two already deny everyone but the directory's owner).
    A file entry stands for ``alike`` more files of its directory with the same owner, group, mode
    and ACL, which sort after it and deny exactly whom it denies.
    """

    path: str
    kind: str = "directory"
    uid: int = -1
    gid: int = -1
    mode: int = 0
    target: str | None = None
    acl: Acl | None = None
    owners: tuple[int, ...] = ()
    alike: int = 0

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.mode, self.uid, self.gid, self.acl)

    def sticky_denies(self, user: PosixUser, permission: str) -> bool:
        return (permission in REPLACING and self.kind == "directory" and bool(self.mode & stat_mod.S_ISVTX)
                and sticky_denies(user, self.uid, self.owners))

    def denies(self, user: PosixUser, permission: str) -> bool:
        """Whether this entry denies ``user`` what a recursive ``permission`` scope above grants."""
        if self.kind == "unreadable":
            return True
        if self.kind not in ("directory", "file"):
            return False
        return (not grants(user, self.info, needed_below(permission, self.kind == "directory"))
                or self.sticky_denies(user, permission))

    def explain(self, user: PosixUser, permission: str) -> str:
        """Operator-readable sentence on why this entry refuses ``permission`` to ``user``."""
        if self.kind == "unreadable":
            return f"{self.path} could not be scanned, so nothing below it can be vouched for"
        if self.kind == "symlink":
            where = self.target if self.target is not None else "outside the storage root"
            return f"{self.path} is a symbolic link leading to {where}, outside the granted directory"
        want = needed_below(permission, self.kind == "directory")
        klass, bits = access_class(user, self.info, want)
        if bits & want != want:
            return explain(want & ~bits, self.path, user, klass, self.info)
        return (f"{self.path} is a sticky directory (mode {self.mode:04o}, owner {self.uid}) holding entries "
                f"of other users, which user {user.name} may not delete or rename")

    def describe(self) -> str:
        """One line of ``scitoken-issuer scan-tree`` output."""
        if self.kind == "symlink":
            return f"{self.path}  symlink -> {self.target or '(outside the storage root)'}"
        if self.kind == "unreadable":
            return f"{self.path}  unreadable (not scanned)"
        acl = "  +acl" if self.acl is not None else ""
        kind = "  file" if self.kind == "file" else ""
        sticky = f"  sticky, entries owned by {' '.join(map(str, self.owners))}" if self.owners else ""
        alike = f"  and {self.alike} more alike" if self.alike else ""
        return f"{self.path}{kind}  owner {self.uid} group {self.gid} mode {self.mode:04o}{acl}{sticky}{alike}"


class SubtreeCheck(Protocol):
    """What the live check asks in strict mode: the first entry at or below a scope path that
    denies a recursive permission. The index answers it from a snapshot, the live walk from disk."""

    root: str

    def first_denial(self, path: str, user: PosixUser, permission: str) -> Boundary | None: ...
