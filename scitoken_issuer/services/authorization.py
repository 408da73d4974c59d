"""The scope decision for a user: ``grant_scopes(user, requested_scopes, client)``.

Every user flow (authorization code, device code, refresh) and the operator's ``check-scope``
call this one interface (docs/authorization.md). A storage scope, in either profile's spelling
(docs/scopes.md), is granted only when the client's policy covers it and the POSIX rule allows
every WLCG permission a verifier reads into its verb, on its path under ``POSIX_PATH`` (and, in
strict mode, nothing below denies it); an administrator-only scope only when an administrator's
client policy holds it; every other scope follows the client's registered policy. The first
refused scope ends the decision: nothing is silently narrowed or widened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from .policy import Refusal, check_client_scopes, client_policy, policy_allows
from .posix import Decision, LiveSubtree, StatCache, check_scope
from .posix_rule import SubtreeCheck
from .scope_verbs import Profile
from .scopes import Scope, ScopeError, parse_scopes
from .users import PosixUser

if TYPE_CHECKING:
    from .group_cache import GroupCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    """The granted scopes (as requested, in order) and the ``wlcg.groups`` the token may carry."""

    scopes: list[Scope]
    groups: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return " ".join(s.raw for s in self.scopes)


@dataclass(frozen=True)
class UserAuthorization:
    """The user an authorization is for, as authlib's grants pass it around (``grant_user``).

    ``subject`` is the POSIX user name (the token's ``sub``); ``identity_id`` links the upstream
    identity (None for the development login); ``grant`` is set once scopes were decided.
    """

    subject: str
    identity_id: int | None = None
    auth_time: int | None = None
    claims: dict = field(default_factory=dict)
    grant: Grant | None = None
    family_id: str | None = None
    audience: str | list[str] | None = None

    def with_grant(self, grant: Grant) -> "UserAuthorization":
        return replace(self, grant=grant)

    def get_user_id(self) -> str:  # authlib calls this on grant users
        return self.subject


#: Called by :meth:`ScopePolicy.grant_scopes` with each scope it decided and why: the POSIX
#: :class:`Decision` of a storage scope, a sentence for any other granted scope.
Explain = Callable[[Scope, "Decision | str"], None]


class ScopePolicy:
    """Decides scopes for users against the filesystem under ``root`` (``POSIX_PATH``).

    In strict mode ``index`` supplies the tree index (rule 4 of docs/authorization.md); without
    one, the subtree is walked live (:class:`LiveSubtree`), which is exact but slow on big trees.
    """

    def __init__(self, root: str | None, strict: bool, index: Callable[[], SubtreeCheck] | None = None,
                 stat_cache: StatCache | None = None, default_profile: Profile | None = None):
        self.root = root
        self.strict = strict
        self.index = index
        self.stat_cache = stat_cache
        #: ``TOKEN_PROFILE``; None (no settings) checks storage verbs as either profile reads them
        self.default_profile = default_profile

    def token_profile(self, client) -> Profile | None:
        """The profile of the tokens ``client`` gets: its ``token_profile`` or the default."""
        metadata = getattr(client, "client_metadata", None) or {}
        return metadata.get("token_profile") or self.default_profile

    def check_storage(self, user: PosixUser, scope: Scope, profile: Profile | None = None) -> Decision:
        """The POSIX decision for one storage scope: every permission a verifier reads into it in a
        ``profile`` token (docs/scopes.md; ``None``: either profile)."""
        index: SubtreeCheck | None = None
        if self.strict:
            index = self.index() if self.index else LiveSubtree(self.root)
        return check_scope(self.root, user, scope, index=index, stat_cache=self.stat_cache, profile=profile)

    def grant_scopes(self, user: PosixUser | None, requested: list[Scope] | str, client,
                     explain: Explain | None = None) -> Grant | Refusal:
        """Grant all of ``requested`` for ``user`` through ``client``, or refuse naming the first
        scope that may not be granted and why; ``explain`` hears why each decided scope went the
        way it did (``check-scope`` prints that, so the operator sees the token's own answer)."""
        try:
            scopes = parse_scopes(requested) if isinstance(requested, str) else list(requested)
        except ScopeError as exc:  # e.g. a stored request from before a grammar change
            return Refusal(str(requested)[:200], f"malformed scope: {exc}")
        tell = explain or (lambda scope, why: None)
        refusal = check_client_scopes(client, scopes, for_user=True)
        if refusal:
            return refusal
        if user is None:
            first = next((s for s in scopes if s.kind in ("storage", "groups")), None)
            if first is not None:
                return Refusal(first.raw, "the user has no POSIX account on this site")
            return Grant(scopes)
        groups: list[str] = []
        for scope in scopes:
            if scope.kind == "storage":
                if self.root is None:
                    return Refusal(scope.raw, "storage scopes are not available: POSIX_PATH is not configured")
                decision = self.check_storage(user, scope, self.token_profile(client))
                tell(scope, decision)
                if not decision.granted:
                    return Refusal(scope.raw, f"{scope.raw} refused: {decision.reason}")
            elif scope.kind == "groups":
                visible = self.visible_groups(user, client)
                if scope.path is None:
                    groups.extend(g for g in visible if g not in groups)
                    tell(scope, f"the token lists {user.name}'s groups this client may see: "
                                f"{' '.join(visible) or '(none)'}")
                elif scope.path in visible:
                    if scope.path not in groups:
                        groups.append(scope.path)
                    tell(scope, f"{user.name} is a member of group {scope.path}")
                else:
                    return Refusal(scope.raw, f"{user.name} is not a member of group {scope.path}")
            else:
                tell(scope, "within the client's registered scope policy")
        return Grant(scopes, groups)

    @staticmethod
    def visible_groups(user: PosixUser, client) -> list[str]:
        """The user's groups as ``/name``, limited to those the client's policy lets it see."""
        policy = client_policy(client, for_user=True)
        names = [f"/{name}" for name in user.group_names]
        return [g for g in names if policy_allows(policy, Scope(f"wlcg.groups:{g}", "groups", None, g))]


class UserScopes:
    """The one scope decision for a user by name: their groups (from the cache), then the policy."""

    def __init__(self, groups: "GroupCache", policy: ScopePolicy):
        self.groups = groups
        self.policy = policy

    def grant_scopes(self, username: str, requested: list[Scope] | str, client) -> Grant | Refusal:
        return self.policy.grant_scopes(self.groups.get(username), requested, client)
