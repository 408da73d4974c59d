"""The ``audience`` request parameter (WLCG profile): narrowing the token's ``aud``."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import InvalidRequestError

from ..extensions import runtime

#: The WLCG value meaning "any audience"; when it is the default, any narrower audience is fine.
ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_AUDIENCES = 5


def requested_audience(value: object) -> str | list[str] | None:
    """Validate an ``audience`` parameter; None means the default ``AUDIENCE``.

    A client may narrow the audience when the default is the WLCG "any" audience (a token for
    one named service is strictly less powerful than one for any); otherwise only the default
    itself may be asked for.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequestError("audience must be a string")
    values = value.split()
    if not values or len(values) > MAX_AUDIENCES or not all(_AUDIENCE.match(v) for v in values):
        raise InvalidRequestError(f"audience must be up to {MAX_AUDIENCES} space-separated URIs or names")
    default = runtime().settings.audience
    if default != ANY_AUDIENCE and any(v != default for v in values):
        raise InvalidRequestError(f"audience may only be {default} on this issuer")
    return values[0] if len(values) == 1 else values
