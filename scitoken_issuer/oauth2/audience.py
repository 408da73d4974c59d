"""The ``audience`` request parameter: narrowing a token's ``aud`` (docs/tokens.md, "Audience").

Every grant takes it (authorization code at ``/auth/authorize``, device code at
``/auth/device/code``, client credentials and refresh at ``/auth/token``); a refresh family keeps
the audience its authorization narrowed to. Stored values are the audiences space separated.
"""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import InvalidRequestError

from ..extensions import runtime
from ..services.tokens import WLCG_ANY_AUDIENCE

#: Kept for callers that name the WLCG "any" audience by this module.
ANY_AUDIENCE = WLCG_ANY_AUDIENCE
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_AUDIENCES = 5

Audience = str | list[str]


def requested_audience(value: object) -> Audience | None:
    """Validate an ``audience`` parameter; None means the default audience.

    When the site set ``AUDIENCE``, only that may be asked for. Otherwise the default is the
    profile's "any" audience, and any audience narrows it (a token for named services is strictly
    less powerful than one for any).
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequestError("audience must be a string")
    values = value.split()
    if not values or len(values) > MAX_AUDIENCES or not all(_AUDIENCE.match(v) for v in values):
        raise InvalidRequestError(f"audience must be up to {MAX_AUDIENCES} space-separated URIs or names")
    fixed = runtime().settings.audience
    if fixed is not None and any(v != fixed for v in values):
        raise InvalidRequestError(f"audience may only be {fixed} on this issuer")
    return from_text(" ".join(dict.fromkeys(values)))


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
