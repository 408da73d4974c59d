"""The POSIX identity of a user, as every group source and the policy see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PosixUser:
    """A user's POSIX identity: name, uid, primary gid and every group id it belongs to.

    ``gids`` always contains ``gid`` (the primary group). ``groups`` maps each gid to its
    group name where known, for ``wlcg.groups`` claims.
    """

    name: str
    uid: int
    gid: int
    gids: frozenset[int]
    groups: dict[int, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.gid not in self.gids:
            object.__setattr__(self, "gids", frozenset(self.gids) | {self.gid})

    @property
    def group_names(self) -> list[str]:
        """Sorted names of the user's groups (those with a known name)."""
        return sorted(self.groups[g] for g in self.gids if g in self.groups)


def directory_claims(source: Any, username: str) -> dict:
    """OIDC claims (``email``) the user directory holds for ``username``; ``{}`` when it holds none.

    Only the development users file holds any today; the upstream IdP's own claims travel with
    the sign-in (ID token) instead."""
    claims = getattr(source, "profile_claims", None)
    return dict(claims(username)) if callable(claims) else {}
