"""The tree index's fast query: the first recorded entry in a range that denies a given user.

For one permission, a plain entry (no ACL, not a sticky directory holding entries) denies user U
iff U owns it and the owner bits lack what the permission needs on it, or U does not own it, its
group is one of U's and the group bits lack it, or neither and the other bits lack it — the
class choice of ``posix_rule.access_class``, taken apart so a query needs a few bisections
however many entries a subtree holds. Entries the split cannot judge (ACLs, sticky directories,
unreadable directories) are judged one by one with ``Boundary.denies``, the rule itself.
"""

from __future__ import annotations

import stat as stat_mod
from bisect import bisect_left

from .posix_rule import REPLACING, Boundary, needed_below
from .users import PosixUser


class DenialLists:
    """For one permission: which entries lack what it needs, by the class that would decide.

    Owner-denials by uid, group-denials by gid, other-denials in one list with a pointer to the
    next entry of another gid (to skip, in one step, a run of U's group's entries), and the
    special entries. Positions are indexes into the sorted list of entries.
    """

    def __init__(self, boundaries: list[Boundary], permission: str) -> None:
        self.by_owner: dict[int, list[int]] = {}
        self.by_group: dict[int, list[int]] = {}
        self.other: list[int] = []
        self.special: list[int] = []
        for i, b in enumerate(boundaries):
            if b.kind == "unreadable":
                self.special.append(i)
                continue
            if b.kind not in ("directory", "file"):
                continue
            if permission in REPLACING and b.owners and b.mode & stat_mod.S_ISVTX:
                self.special.append(i)
                continue
            want = needed_below(permission, b.kind == "directory")
            if not want:
                continue
            if b.acl is not None:
                self.special.append(i)
                continue
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
