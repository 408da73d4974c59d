"""Strict scope grammar for the WLCG 1.0 and SciTokens 2.0 token profiles (SPEC §6, §7 step 1).

Scopes are parsed once, into :class:`Scope` values, and refused with a human reason
(:class:`ScopeError`) when they are malformed. Nothing is silently fixed: a path with ``//``,
``.``, ``..``, a trailing slash or a control character is an error, never normalised, because the
storage service that later reads the token must see exactly the path that was authorized.

Every scope must be an RFC 6749 §3.3 ``scope-token`` (printable ASCII, no space, ``"`` or ``\\``).
Storage paths additionally may not contain ``%``: some storage services percent-decode paths, and
``%2e%2e`` must not become ``..`` after the decision was taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ScopeKind = Literal["storage", "groups", "compute", "openid", "offline_access", "other"]
Profile = Literal["wlcg", "scitokens"]

MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255  # NAME_MAX on every filesystem we meet
MAX_SCOPE_LENGTH = MAX_PATH_LENGTH + 32
MAX_SCOPES = 100

WLCG_STORAGE_PERMISSIONS = ("read", "create", "modify", "stage")
COMPUTE_PERMISSIONS = ("read", "modify", "create", "cancel")
# SciTokens 2.0 verbs and the WLCG permissions each one stands for (SPEC §6).
SCITOKENS_STORAGE_PERMISSIONS = {"read": ("read",), "write": ("create", "modify")}
# Prefixes this module owns: a scope starting with one of them (in any letter case) must match
# the grammar exactly, so that ``Storage.Read:/x`` is an error, not an unchecked "other" scope.
_RESERVED_PREFIXES = ("storage.", "wlcg.", "compute.", "read:", "write:")
_RESERVED_WORDS = ("read", "write", "storage", "compute", "wlcg")


class ScopeError(ValueError):
    """A scope (or scope string) that does not follow the grammar; the message says why."""


@dataclass(frozen=True)
class Scope:
    """One parsed scope.

    ``permission`` is the scope's verb for storage scopes: a WLCG permission (``read``,
    ``create``, ``modify``, ``stage``) or, for the SciTokens ``write:/p``, ``write`` — which
    stands for two WLCG permissions; use :func:`storage_permissions` for the set to check.
    ``path`` is the absolute storage path, or the group path for ``wlcg.groups:/g``.
    """

    raw: str
    kind: ScopeKind
    permission: str | None = None
    path: str | None = None

    @property
    def is_storage(self) -> bool:
        return self.kind == "storage"

    def __str__(self) -> str:
        return self.raw


def validate_path(path: str, what: str = "path") -> str:
    """Return ``path`` if it is absolute and already normalised, else raise :class:`ScopeError`.

    SPEC §7 step 1: absolute, normalised, no ``..``, NUL or control characters.
    """
    if not isinstance(path, str):
        raise ScopeError(f"{what} must be a string")
    if not path:
        raise ScopeError(f"{what} is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise ScopeError(f"{what} is longer than {MAX_PATH_LENGTH} characters")
    for ch in path:
        if not ("\x21" <= ch <= "\x7e") or ch in '"\\%':
            raise ScopeError(f"{what} contains a forbidden character {ch!r}: {path!r}")
    if not path.startswith("/"):
        raise ScopeError(f"{what} must be absolute: {path}")
    if path == "/":
        return path
    if path.endswith("/"):
        raise ScopeError(f"{what} must not end with '/': {path}")
    for segment in path[1:].split("/"):
        if not segment:
            raise ScopeError(f"{what} has an empty segment ('//'): {path}")
        if segment in (".", ".."):
            raise ScopeError(f"{what} has a '{segment}' segment: {path}")
        if segment.endswith("."):
            raise ScopeError(f"{what} has a segment ending with '.': {path}")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise ScopeError(f"{what} has a segment longer than {MAX_SEGMENT_LENGTH} characters")
    return path


def _check_token(text: str) -> None:
    if not text:
        raise ScopeError("empty scope")
    if len(text) > MAX_SCOPE_LENGTH:
        raise ScopeError(f"scope is longer than {MAX_SCOPE_LENGTH} characters")
    for ch in text:
        if not ("\x21" <= ch <= "\x7e") or ch in '"\\':
            raise ScopeError(f"scope contains a forbidden character {ch!r}: {text!r}")


def parse_scope(text: str) -> Scope:
    """Parse one scope token into a :class:`Scope`, or raise :class:`ScopeError` saying why."""
    if not isinstance(text, str):
        raise ScopeError("scope must be a string")
    _check_token(text)
    verb, sep, rest = text.partition(":")
    if text in ("openid", "offline_access"):
        return Scope(text, text)  # type: ignore[arg-type]
    if verb.startswith("storage."):
        permission = verb[len("storage."):]
        if permission not in WLCG_STORAGE_PERMISSIONS:
            raise ScopeError(f"unknown storage permission {permission!r}: {text}")
        if not sep:
            raise ScopeError(f"storage scope needs an absolute path: {text}")
        return Scope(text, "storage", permission, validate_path(rest, f"path of {verb}"))
    if verb in SCITOKENS_STORAGE_PERMISSIONS:
        if not sep:
            raise ScopeError(f"storage scope needs an absolute path: {text}")
        return Scope(text, "storage", verb, validate_path(rest, f"path of {verb}"))
    if verb == "wlcg.groups":
        if not sep:
            return Scope(text, "groups")
        return Scope(text, "groups", None, validate_path(rest, "group path"))
    if verb.startswith("compute."):
        if verb[len("compute."):] not in COMPUTE_PERMISSIONS:
            raise ScopeError(f"unknown compute scope: {text}")
        if sep:
            raise ScopeError(f"compute scopes take no path: {text}")
        return Scope(text, "compute")
    lowered = text.lower()
    if lowered.startswith(_RESERVED_PREFIXES) or verb.lower() in _RESERVED_WORDS:
        raise ScopeError(f"unknown scope (WLCG/SciTokens scopes are lower case): {text}")
    return Scope(text, "other")


def parse_scopes(scope_string: str | Iterable[str] | None) -> list[Scope]:
    """Parse a space separated scope string (RFC 6749 §3.3); duplicates dropped, order kept.

    Raises :class:`ScopeError` naming the first malformed scope.
    """
    if scope_string is None:
        return []
    if isinstance(scope_string, str):
        if len(scope_string) > MAX_SCOPES * (MAX_SCOPE_LENGTH + 1):
            raise ScopeError("scope string is too long")
        for ch in scope_string:
            if ch != " " and not ("\x21" <= ch <= "\x7e"):
                raise ScopeError(f"scope string contains a forbidden character {ch!r}")
        tokens: Iterable[str] = [t for t in scope_string.split(" ") if t]
    else:
        tokens = list(scope_string)
    seen: dict[str, Scope] = {}
    for token in tokens:
        if token not in seen:
            seen[token] = parse_scope(token)
            if len(seen) > MAX_SCOPES:
                raise ScopeError(f"more than {MAX_SCOPES} scopes requested")
    return list(seen.values())


def storage_permissions(scope: Scope) -> tuple[str, ...]:
    """The WLCG permissions a storage scope needs (``write`` = create + modify); ``()`` otherwise."""
    if scope.kind != "storage" or scope.permission is None:
        return ()
    return SCITOKENS_STORAGE_PERMISSIONS.get(scope.permission, (scope.permission,))


def render_scopes(scopes: Iterable[Scope], profile: Profile) -> list[str]:
    """Render granted scopes as the token's ``scope`` claim wants them for ``profile`` (SPEC §6).

    ``wlcg``: ``storage.<perm>:/p`` (``write:/p`` becomes create and modify).
    ``scitokens``: ``read:/p`` / ``write:/p`` (``stage`` → read, ``create``/``modify`` → write).
    Non-storage scopes are passed through unchanged. Duplicates are dropped, order kept.
    """
    if profile not in ("wlcg", "scitokens"):
        raise ValueError(f"unknown token profile {profile!r}")
    out: dict[str, None] = {}
    for scope in scopes:
        if scope.kind != "storage":
            out.setdefault(scope.raw)
            continue
        for perm in storage_permissions(scope):
            if profile == "wlcg":
                out.setdefault(f"storage.{perm}:{scope.path}")
            else:
                verb = "read" if perm in ("read", "stage") else "write"
                out.setdefault(f"{verb}:{scope.path}")
    return list(out)
