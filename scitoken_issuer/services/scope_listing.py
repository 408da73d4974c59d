""""Which storage scopes may I ask for?" — a listing for one user and client (docs/researchers.md).

For each directory in the top levels of ``POSIX_PATH`` (a bounded depth and count) it asks
:meth:`ScopePolicy.grant_scopes` — the very decision a token request gets — for
``storage.read``, ``storage.create``, ``storage.modify`` and ``storage.stage`` on that path, one
scope at a time, and keeps the answer and its sentence (the grant's reason, or the refusal a
token request would get as ``invalid_scope``). ``wlcg.groups`` is decided the same way.

Which directories are listed follows what ``ls`` would show the user: the children of a
directory are listed only when the POSIX rule lets the user list it (read and traverse on it,
traverse on every directory above; :func:`check_access` without strict mode). So the listing
never names a directory the user could not see on the filesystem. That is a visibility choice
only; every answer about a scope comes from ``grant_scopes``.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from .authorization import Grant, ScopePolicy
from .posix import Decision, check_access
from .scope_verbs import WLCG_PERMISSIONS
from .scopes import ScopeError, parse_scope, validate_path
from .users import PosixUser


@dataclass(frozen=True)
class Answer:
    """One scope's decision: granted or not, and the sentence that says why."""

    scope: str
    granted: bool
    reason: str

    def as_json(self) -> dict:
        return {"scope": self.scope, "granted": self.granted, "reason": self.reason}


@dataclass(frozen=True)
class PathAnswers:
    """The four storage permissions on one scope path."""

    path: str
    answers: dict[str, Answer]

    def as_json(self) -> dict:
        return {"path": self.path, "permissions": {p: a.as_json() for p, a in self.answers.items()}}


@dataclass
class ScopeListing:
    """The whole answer of ``GET /auth/scopes``."""

    user: str
    client_id: str
    path: str
    depth: int
    max_paths: int
    strict: bool
    profile: str | None
    paths: list[PathAnswers] = field(default_factory=list)
    groups: Answer | None = None
    group_names: list[str] = field(default_factory=list)
    truncated: bool = False
    note: str | None = None

    def as_json(self) -> dict:
        body = {"user": self.user, "client_id": self.client_id, "path": self.path, "depth": self.depth,
                "max_paths": self.max_paths, "truncated": self.truncated, "strict": self.strict,
                "token_profile": self.profile, "paths": [p.as_json() for p in self.paths],
                "wlcg.groups": {**(self.groups.as_json() if self.groups else {}), "groups": self.group_names}}
        if self.note:
            body["note"] = self.note
        return body


class ScopeLister:
    """Builds :class:`ScopeListing` answers with ``policy`` (the app's one :class:`ScopePolicy`)."""

    def __init__(self, policy: ScopePolicy, max_depth: int, max_paths: int):
        self.policy = policy
        self.max_depth = max_depth
        self.max_paths = max_paths

    def answer(self, user: PosixUser | None, scope_text: str, client) -> Answer:
        """``grant_scopes`` for the one scope, with the reason it gave either way."""
        reasons: list[str] = []

        def explain(_scope, why: Decision | str) -> None:
            reasons.append(why.reason if isinstance(why, Decision) else why)

        outcome = self.policy.grant_scopes(user, [parse_scope(scope_text)], client, explain=explain)
        if isinstance(outcome, Grant):
            return Answer(scope_text, True, reasons[-1] if reasons else "granted")
        return Answer(scope_text, False, outcome.reason)

    def listing(self, user: PosixUser | None, username: str, client, path: str = "/",
                depth: int | None = None) -> ScopeListing:
        """The listing below scope ``path`` (validated: ScopeError) to ``depth`` levels."""
        validate_path(path)
        depth = self.max_depth if depth is None else max(0, min(depth, self.max_depth))
        result = ScopeListing(user=username, client_id=client.client_id, path=path, depth=depth,
                              max_paths=self.max_paths, strict=self.policy.strict,
                              profile=self.policy.token_profile(client))
        result.groups = self.answer(user, "wlcg.groups", client)
        if result.groups.granted:
            grant = self.policy.grant_scopes(user, [parse_scope("wlcg.groups")], client)
            result.group_names = list(grant.groups) if isinstance(grant, Grant) else []
        if user is None:
            result.note = "you have no POSIX account on this site, so no storage scope can be granted"
        elif self.policy.root is None:
            result.note = "this issuer has no POSIX_PATH configured, so no storage scope can be granted"
        for scope_path in self._directories(user, path, depth, result):
            result.paths.append(PathAnswers(scope_path, {
                perm: self.answer(user, f"storage.{perm}:{scope_path}", client) for perm in WLCG_PERMISSIONS}))
        return result

    def _directories(self, user: PosixUser | None, start: str, depth: int, result: ScopeListing) -> list[str]:
        """``start`` and the directories below it the user could list, breadth first, by name."""
        if user is None or self.policy.root is None:
            return []
        root = os.path.realpath(self.policy.root)
        found: list[str] = []
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        while queue:
            path, level = queue.popleft()
            if len(found) >= self.max_paths:
                result.truncated = True
                break
            found.append(path)
            if level >= depth or not self.may_list(user, path):
                continue
            for name in self._subdirectories(root, path):
                child = f"{path.rstrip('/')}/{name}"
                try:
                    validate_path(child)
                except ScopeError:
                    continue  # a name no scope can spell (control characters, '%', too long)
                queue.append((child, level + 1))
        return found

    def may_list(self, user: PosixUser, path: str) -> bool:
        """Whether the POSIX rule lets ``user`` list the directory (as ``ls`` would)."""
        return check_access(self.policy.root, user, "read", path, stat_cache=self.policy.stat_cache).granted

    @staticmethod
    def _subdirectories(root: str, path: str) -> list[str]:
        host = root if path == "/" else root.rstrip("/") + path
        try:
            with os.scandir(host) as entries:
                return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            return []
