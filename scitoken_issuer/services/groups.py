"""Where a user's POSIX groups come from (docs/authorization.md): the system (NSS), LDAP, or a static dev file.

Every source answers two questions behind one small protocol:

* ``lookup(username)`` — live, for one user; ``None`` when the user does not exist.
* ``iter_users()`` — one pass over every user, for the precomputed group cache.

A source that cannot answer right now raises :class:`GroupsUnavailable`; callers turn that into a
503 and never into a grant. The LDAP source is in :mod:`scitoken_issuer.services.ldap_groups`.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

from werkzeug.security import check_password_hash

from scitoken_issuer.services.users import PosixUser

logger = logging.getLogger(__name__)


class GroupsError(Exception):
    """Base of every group-resolution error."""


class GroupsUnavailable(GroupsError):
    """The group source (LDAP, the cache's backing store, …) cannot answer now: answer 503."""


@runtime_checkable
class GroupSource(Protocol):
    """A source of POSIX identities and group memberships."""

    def lookup(self, username: str) -> PosixUser | None:
        """The user's identity and groups, live; ``None`` if there is no such user."""

    def iter_users(self) -> Iterable[PosixUser]:
        """Every user with its groups, computed in one pass (for precompute)."""


class NssGroupSource:
    """Users and groups from the system's name service (``pwd``/``grp``: files, sssd, …).

    The live look-up uses ``getgrouplist`` (what ``initgroups`` and so the kernel use); the full
    pass reads ``getpwall``/``getgrall`` once. With an NSS backend that does not enumerate (sssd's
    default ``enumerate = false``) the pass sees fewer memberships than the live look-up: the cache
    may then deny until the entry goes stale, but never grants more.
    """

    def lookup(self, username: str) -> PosixUser | None:
        if not username or "\0" in username:
            return None
        try:
            pw = pwd.getpwnam(username)
        except KeyError:
            return None
        gids = frozenset(os.getgrouplist(pw.pw_name, pw.pw_gid)) | {pw.pw_gid}
        names: dict[int, str] = {}
        for gid in gids:
            try:
                names[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                pass  # a gid without a group entry still counts for permission checks
        return PosixUser(pw.pw_name, pw.pw_uid, pw.pw_gid, gids, names)

    def iter_users(self) -> Iterable[PosixUser]:
        names: dict[int, str] = {}
        member_of: dict[str, set[int]] = {}
        for group in grp.getgrall():
            names.setdefault(group.gr_gid, group.gr_name)
            for member in group.gr_mem:
                member_of.setdefault(member, set()).add(group.gr_gid)
        seen: set[str] = set()
        for pw in pwd.getpwall():
            if pw.pw_name in seen:  # duplicate passwd lines: the first one wins, as getpwnam
                continue
            seen.add(pw.pw_name)
            gids = frozenset(member_of.get(pw.pw_name, ())) | {pw.pw_gid}
            yield PosixUser(pw.pw_name, pw.pw_uid, pw.pw_gid, gids,
                            {g: names[g] for g in gids if g in names})


class StaticGroupSource:
    """Development users from a JSON file (the embedded default's local login, docs/flows.md).

    The file is a JSON list of ``{"name", "password_hash", "uid", "gid", "email", "groups": [{"name",
    "gid"}, …]}`` (``email`` optional); ``password_hash`` is a ``werkzeug.security.generate_password_hash`` string. See
    ``config/dev-users.json`` and its README. The file is read once, at construction.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._users: dict[str, PosixUser] = {}
        self._hashes: dict[str, str] = {}
        self._emails: dict[str, str] = {}
        try:
            records = json.loads(self.path.read_text())
            if not isinstance(records, list):
                raise ValueError("expected a JSON list of users")
            for record in records:
                self._add(record)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: invalid development users file: {exc}") from exc

    def _add(self, record: dict) -> None:
        name = record["name"]
        if not isinstance(name, str) or not name or name in self._users:
            raise ValueError(f"bad or duplicate user name {name!r}")
        groups = {int(g["gid"]): str(g["name"]) for g in record.get("groups", [])}
        uid, gid = int(record["uid"]), int(record["gid"])
        self._users[name] = PosixUser(name, uid, gid, frozenset(groups) | {gid}, groups)
        self._hashes[name] = str(record["password_hash"])
        if record.get("email") is not None:
            if not isinstance(record["email"], str) or "@" not in record["email"]:
                raise ValueError(f"bad email for user {name!r}")
            self._emails[name] = record["email"]

    def lookup(self, username: str) -> PosixUser | None:
        return self._users.get(username)

    def iter_users(self) -> Iterable[PosixUser]:
        return list(self._users.values())

    def profile_claims(self, username: str) -> dict:
        """OIDC profile claims the file holds for the user (``email``)."""
        email = self._emails.get(username)
        return {"email": email} if email else {}

    def check_password(self, username: str, password: str) -> bool:
        """True if ``password`` is the user's development password."""
        stored = self._hashes.get(username)
        return stored is not None and check_password_hash(stored, password)
