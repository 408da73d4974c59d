"""The ``audience`` and ``resource`` request parameters: narrowing a token's ``aud``
(docs/tokens.md, "Audience").

Every grant takes them (authorization code at ``/auth/authorize``, and at ``/auth/token`` to
narrow the code's audience; device code at ``/auth/device/code``; client credentials, refresh and
token exchange at ``/auth/token``); a refresh family keeps the audience its authorization narrowed
to. ``audience`` is repeatable, each value space separated (RFC 8693 §2.1); ``resource`` is
repeatable, each an absolute URI (RFC 8707 §2). Stored values are the audiences space separated.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError

from ..extensions import runtime
from ..services.tokens import WLCG_ANY_AUDIENCE

#: Kept for callers that name the WLCG "any" audience by this module.
ANY_AUDIENCE = WLCG_ANY_AUDIENCE
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_AUDIENCES = 5

Audience = str | list[str]


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2 and RFC 8693 §2.2.2: no token for the resource (or audience) asked."""

    error = "invalid_target"


def requested_audience(payload, outside: type[OAuth2Error] = InvalidRequestError) -> Audience | None:
    """The audience a request asks for (every ``audience`` and ``resource`` value); None means
    the default audience.

    When the site set ``AUDIENCE``, only that may be asked for. Otherwise the default is the
    profile's "any" audience, and any audience narrows it (a token for named services is strictly
    less powerful than one for any). A malformed ``audience`` is ``invalid_request``, one outside
    ``AUDIENCE`` is ``outside``; anything wrong with a request carrying ``resource`` is
    ``invalid_target`` (RFC 8707 §2), so a client is never given a token for other services than
    it named.
    """
    data = payload.datalist
    resources = [str(v) for v in data.get("resource") or []]
    audiences = [str(v) for v in data.get("audience") or []]
    values = [v for text in audiences for v in text.split()]
    if any(text and not text.split() for text in audiences):
        raise InvalidRequestError(f"audience must be up to {MAX_AUDIENCES} space-separated URIs or names")
    for resource in resources:
        parts = urlsplit(resource)
        if not parts.scheme or not parts.netloc or parts.fragment or not _AUDIENCE.match(resource):
            raise InvalidTargetError(_safe(f"resource must be an absolute URI without a fragment, "
                                           f"up to 255 characters (RFC 8707 section 2): {resource}"))
        values.append(resource)
    if not values:
        return None
    malformed = InvalidTargetError if resources else InvalidRequestError
    if len(values) > MAX_AUDIENCES or not all(_AUDIENCE.match(v) for v in values):
        raise malformed(f"audience must be up to {MAX_AUDIENCES} space-separated URIs or names")
    fixed = runtime().settings.audience
    if fixed is not None and any(v != fixed for v in values):
        raise (InvalidTargetError if resources else outside)(f"audience may only be {fixed} on this issuer")
    return from_text(" ".join(dict.fromkeys(values)))


def narrowed_audience(payload, granted: Audience | None) -> Audience | None:
    """The audience of a token given from an authorization for ``granted`` (None: the default):
    ``granted``, or a narrower one the request asks for; never one outside it."""
    asked = requested_audience(payload)
    if asked is None:
        return granted
    if granted is not None and not within(asked, granted):
        error = InvalidTargetError if payload.datalist.get("resource") else InvalidRequestError
        raise error("audience must be within the audience this authorization was granted for")
    return asked


def to_text(audience: Audience | None) -> str | None:
    """How an audience is stored (space separated); None stays None (the default)."""
    if audience is None:
        return None
    return audience if isinstance(audience, str) else " ".join(audience)


def from_text(text: str | None) -> Audience | None:
    """The ``aud`` value of a stored audience: one string, or a list of several."""
    values = (text or "").split()
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def within(asked: Audience, granted: Audience) -> bool:
    """Whether every audience in ``asked`` is one of ``granted`` (a refresh may narrow, never widen)."""
    return set(to_text(asked).split()) <= set(to_text(granted).split())


def _safe(text: str) -> str:
    """``text`` as an RFC 6749 ``error_description`` (client input may hold any character)."""
    from .server import error_description  # the server module imports this one

    return error_description(text)
