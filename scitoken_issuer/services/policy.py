"""Which scopes a client may carry: its registered scope policy (docs/authorization.md,
docs/scopes.md).

A client's registered ``scope`` is its policy: a storage scope there covers the WLCG
permissions its verb stands for (in either profile's spelling) on the path and everything below
it; ``wlcg.groups`` covers every group, ``wlcg.groups:/g`` group ``/g`` and its subgroups (a
user's bare ``wlcg.groups`` request is then answered with only those groups); other scopes are
matched exactly. Administrator-only scopes (compute, HTCondor) count only in a policy an
administrator set (a client registered by the CLI, the admin token or ``STATIC_CLIENTS``).
A user-facing client that registered no scope gets :data:`DEFAULT_USER_CLIENT_SCOPE` (the
user's POSIX permissions still decide every storage scope); a client acting for itself (client
credentials, token exchange) gets nothing it did not register.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .posix_rule import is_under
from .scopes import Scope, parse_scopes, policy_permissions

DEFAULT_USER_CLIENT_SCOPE = ("openid profile email offline_access wlcg.groups "
                             "storage.read:/ storage.create:/ storage.modify:/ storage.stage:/")
#: Who registered a client (``Client.source``) when an administrator set its policy.
ADMIN_SOURCES = frozenset({"admin", "static"})


@dataclass(frozen=True)
class Refusal:
    """Why a scope was refused: ``scope`` is the first refused scope, ``reason`` says why."""

    scope: str
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class AnyClient:
    """A client that registered no scope, so the default user-client policy: what ``check-scope``
    without ``--client`` and the scope listing for a signed-in browser decide for."""

    client_id: str = "(any client without a registered scope)"
    scope: str = ""


def client_policy(client, *, for_user: bool) -> list[Scope]:
    registered = client.scope
    if not registered and for_user:
        registered = DEFAULT_USER_CLIENT_SCOPE
    return list(_parsed_policy(registered))


@lru_cache(maxsize=4096)
def _parsed_policy(registered: str) -> tuple[Scope, ...]:
    """Registered policies are few and read on every decision: parse each once."""
    return tuple(parse_scopes(registered))


def policy_allows(policy: list[Scope], scope: Scope) -> bool:
    """Whether one requested scope falls within a client's policy."""
    if scope.kind == "storage":
        needed = set(policy_permissions(scope))
        for allowed in policy:
            if allowed.kind == "storage" and is_under(scope.path, allowed.path):
                needed -= set(policy_permissions(allowed))
        return not needed
    if scope.kind == "groups":
        for allowed in policy:
            if allowed.kind == "groups" and (allowed.path is None or
                                             (scope.path is not None and is_under(scope.path, allowed.path))):
                return True
        return False
    return any(allowed.raw == scope.raw for allowed in policy)


def admin_set(client) -> bool:
    """Whether an administrator registered ``client`` (and so set its policy)."""
    return getattr(client, "source", None) in ADMIN_SOURCES


def check_client_scopes(client, scopes: list[Scope], *, for_user: bool) -> Refusal | None:
    """The first requested scope outside the client's policy, or None when all are inside."""
    policy = client_policy(client, for_user=for_user)
    for scope in scopes:
        if for_user and scope.kind == "groups" and scope.path is None and any(
                allowed.kind == "groups" for allowed in policy):
            continue  # "my groups": the grant lists only those the policy covers (visible_groups)
        if scope.kind == "admin" and not admin_set(client):
            return Refusal(scope.raw, f"scope {scope.raw} is administrator-only and client {client.client_id} "
                                      "was not registered by an administrator")
        if not policy_allows(policy, scope):
            return Refusal(scope.raw, f"scope {scope.raw} is not allowed for client {client.client_id}")
    return None
