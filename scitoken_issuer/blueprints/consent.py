"""What a consent page shows: the client, each requested scope in words, and any refusal."""

from __future__ import annotations

from dataclasses import dataclass

from ..extensions import runtime
from ..services.policy import Refusal
from ..services.scopes import Scope, parse_scopes

_WORDS = {
    "read": "read files under", "create": "create files under", "modify": "change or delete files under",
    "stage": "bring files online (stage) under", "write": "create, change or delete files under",
}


@dataclass(frozen=True)
class ShownScope:
    raw: str
    description: str


def describe(scope: Scope) -> str:
    if scope.kind == "storage":
        return f"{_WORDS.get(scope.permission, scope.permission)} {scope.path}"
    if scope.kind == "groups":
        return "see your group memberships" if scope.path is None else f"see whether you are in {scope.path}"
    if scope.kind == "offline_access":
        return "keep access while you are away (refresh token)"
    if scope.kind == "openid":
        return "know who you are"
    if scope.kind == "compute":
        return "use compute resources"
    return ""


def consent_view(username: str, scope_string: str | None, client) -> tuple[list[ShownScope], Refusal | None]:
    """The scopes to show and, if the request cannot be granted, the refusal to show instead."""
    scopes = parse_scopes(scope_string or "")
    decision = runtime().grant_scopes(username, scopes, client)
    shown = [ShownScope(s.raw, describe(s)) for s in scopes]
    return shown, decision if isinstance(decision, Refusal) else None
