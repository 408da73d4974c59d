"""What a consent page shows: the client, each requested scope in words, and any refusal."""

from __future__ import annotations

from dataclasses import dataclass

from ..extensions import runtime
from ..services.policy import Refusal
from ..services.scopes import Scope, ScopeError, parse_scopes


@dataclass(frozen=True)
class ShownScope:
    raw: str
    description: str


def describe(scope: Scope) -> str:
    if scope.verb is not None:  # storage and admin scopes: the verb table's words (docs/scopes.md)
        return scope.verb.meaning + (f" under {scope.path}" if scope.kind == "storage" else
                                     f" ({scope.path})" if scope.path else "")
    if scope.kind == "groups":
        return "see your group memberships" if scope.path is None else f"see whether you are in {scope.path}"
    if scope.kind == "offline_access":
        return "keep access while you are away (refresh token)"
    if scope.kind == "openid":
        return "know who you are"
    return ""


def consent_view(username: str, scope_string: str | None, client) -> tuple[list[ShownScope], Refusal | None]:
    """The scopes to show and, if the request cannot be granted, the refusal to show instead."""
    try:
        scopes = parse_scopes(scope_string or "")
    except ScopeError as exc:  # a stored device request from before a grammar change
        return [], Refusal(scope_string or "", f"malformed scope: {exc}")
    decision = runtime().user_scopes.grant_scopes(username, scopes, client)
    shown = [ShownScope(s.raw, describe(s)) for s in scopes]
    return shown, decision if isinstance(decision, Refusal) else None
