"""Strict scope grammar for the WLCG 1.0 and SciTokens 2.0 token profiles (docs/scopes.md).

Scopes are parsed once, into :class:`Scope` values, and refused with a human reason
(:class:`ScopeError`) when they are malformed. Nothing is silently fixed: a path with ``//``,
``.``, ``..``, a trailing slash or a control character is an error, never normalised, because the
storage service that later reads the token must see exactly the path that was authorized.

What a verb means is what verifiers enforce: every ``verb:path`` (and every bare word a verifier
reads as ``verb:/``) is looked up in the one verb table,
:data:`~scitoken_issuer.services.scope_verbs.VERBS`; a ``something:path`` whose verb is not
there is refused, never passed through. Plain words without ``:`` that no verifier reads as a
verb (``profile``, ``email``, a site's own) stay opaque and follow the client's policy.

Every scope must be an RFC 6749 §3.3 ``scope-token`` (printable ASCII, no space, ``"`` or ``\\``).
Storage paths additionally may not contain ``%``: some storage services percent-decode paths, and
``%2e%2e`` must not become ``..`` after the decision was taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .scope_verbs import RESERVED_PREFIXES, RESERVED_WORDS, VERBS, Profile, Verb

ScopeKind = Literal["storage", "admin", "groups", "openid", "offline_access", "other"]

MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255  # NAME_MAX on every filesystem we meet
MAX_SCOPE_LENGTH = MAX_PATH_LENGTH + 32
MAX_SCOPES = 100


class ScopeError(ValueError):
    """A scope (or scope string) that does not follow the grammar; the message says why."""


@dataclass(frozen=True)
class Scope:
    """One parsed scope.

    ``kind`` is its class (docs/scopes.md): ``storage`` and ``admin`` scopes have a verb in the
    verb table (:attr:`verb`); ``groups``, ``openid``, ``offline_access`` and ``other`` follow the
    client's policy. ``permission`` is a storage scope's verb without the ``storage.`` prefix
    (``read``, ``create``, ``modify``, ``stage``, ``poll`` or ``write``); use
    :func:`storage_permissions` for what the POSIX rule checks. ``path`` is the absolute storage
    path, the group path of ``wlcg.groups:/g``, or an admin scope's path (``condor:/READ``).
    """

    raw: str
    kind: ScopeKind
    permission: str | None = None
    path: str | None = None

    @property
    def is_storage(self) -> bool:
        return self.kind == "storage"

    @property
    def verb(self) -> Verb | None:
        """The verb table's entry for a storage or admin scope; None for the other kinds."""
        return VERBS.get(self.raw.partition(":")[0]) if self.kind in ("storage", "admin") else None

    def __str__(self) -> str:
        return self.raw


def validate_path(path: str, what: str = "path") -> str:
    """Return ``path`` if it is absolute and already normalised, else raise :class:`ScopeError`.

    docs/scopes.md: absolute, normalised, no ``..``, NUL or control characters.
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
    name, sep, rest = text.partition(":")
    if text in ("openid", "offline_access"):
        return Scope(text, text)  # type: ignore[arg-type]
    verb = VERBS.get(name)
    if verb is not None:
        return _verb_scope(text, verb, sep, rest)
    if name == "wlcg.groups":
        if not sep:
            return Scope(text, "groups")
        return Scope(text, "groups", None, validate_path(rest, "group path"))
    lowered = name.lower()
    if lowered in VERBS or lowered.startswith(RESERVED_PREFIXES) or lowered in RESERVED_WORDS:
        if name.startswith("storage."):
            raise ScopeError(f"unknown storage permission {name[len('storage.'):]!r}: {text}")
        if name.startswith("compute."):
            raise ScopeError(f"unknown compute scope: {text}")
        raise ScopeError(f"unknown scope (WLCG/SciTokens scopes are lower case): {text}")
    if sep:
        raise ScopeError(f"unknown scope verb {name!r}: {text} (docs/scopes.md lists the verbs "
                         "this issuer decides; verifiers would read any other as an authorization)")
    return Scope(text, "other")


def _verb_scope(text: str, verb: Verb, sep: str, rest: str) -> Scope:
    """A scope whose verb is in the verb table, with its path checked as the verb requires."""
    if verb.path == "none" and sep:
        raise ScopeError(f"{verb.name.partition('.')[0]} scopes take no path: {text}")
    if verb.path == "required" and not sep:
        raise ScopeError(f"storage scope needs an absolute path: {text}")
    path = validate_path(rest, f"path of {verb.name}") if sep else None
    if verb.kind == "storage":
        return Scope(text, "storage", verb.name.removeprefix("storage."), path)
    return Scope(text, "admin", None, path)


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


def storage_permissions(scope: Scope, profile: Profile | None = None) -> tuple[str, ...]:
    """The WLCG permissions the POSIX rule must allow for a storage scope going into a
    ``profile`` token (``None``: either): everything a verifier reads into it there
    (docs/scopes.md); ``()`` for other kinds."""
    verb = scope.verb
    return verb.checks(profile) if verb is not None else ()


def policy_permissions(scope: Scope) -> tuple[str, ...]:
    """The WLCG permissions a storage scope stands for, which a client's policy must cover."""
    verb = scope.verb
    return verb.permissions if verb is not None and verb.kind == "storage" else ()


def render_scopes(scopes: Iterable[Scope], profile: Profile) -> list[str]:
    """Render granted scopes as the token's ``scope`` claim wants them for ``profile``.

    Each storage scope is written as its verb table entry says (docs/scopes.md, "Tokens"):
    verbatim in its own profile's spelling, translated in the other (``write:/p`` becomes
    ``storage.create:/p storage.modify:/p`` in WLCG; ``storage.create:/p`` becomes ``create:/p``
    in SciTokens, never ``write:/p``, which XRootD and dCache read as overwrite and delete).
    Admin and other scopes are written unchanged. Duplicates are dropped, order kept.
    """
    if profile not in ("wlcg", "scitokens"):
        raise ValueError(f"unknown token profile {profile!r}")
    out: dict[str, None] = {}
    for scope in scopes:
        verb = scope.verb
        if verb is None or verb.kind != "storage":
            out.setdefault(scope.raw)
            continue
        for name in verb.rendered(profile):
            out.setdefault(f"{name}:{scope.path}")
    return list(out)
