"""Failed client authentication is counted per address and per client id (docs/security-web.md).

Wraps :meth:`AuthorizationServer.authenticate_client`, which every endpoint that authenticates a
client goes through (token, device authorization, introspection, revocation).
"""

from __future__ import annotations

from typing import Callable

from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Error
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import request as flask_request

from ..extensions import failure_limits
from ..services.failure_limits import CLIENT_AUTH_BY_ADDRESS, CLIENT_AUTH_BY_CLIENT, address_key, client_key


class TooManyFailures(OAuth2Error):
    """429 (RFC 6585 §4) with ``Retry-After``; ``slow_down`` is the one registered OAuth error that
    tells a client to ask less often (RFC 8628 §3.5, registered for the token endpoint in §7.2)."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(description=f"too many failed client authentications; retry after {retry_after} s")
        self.retry_after = retry_after

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


def presented_client_id(request) -> str | None:
    """The client id the request claims (HTTP Basic per RFC 6749 §2.3.1, or the ``client_id``
    parameter), before anything is verified; None when there is none.

    The Basic header is read by authlib's own parser, the one authentication uses: it decodes
    base64 leniently (characters outside the alphabet are dropped), so a stricter reading here
    would miss a header that still authenticates, and its failures would escape the per-client
    count."""
    try:
        basic_id, _secret = extract_basic_authorization(request.headers)
    except ValueError:  # "Basic " alone, or credentials that are not UTF-8
        basic_id = None
    if isinstance(basic_id, str) and basic_id:
        return basic_id
    value = request.payload.client_id if request.payload is not None else None
    return value if isinstance(value, str) and value else None


def limited_authentication(authenticate: Callable[[], object], request):
    """Run ``authenticate`` unless this address, or this client id from an address it never
    authenticated from, failed too often; count the failure when it raises ``InvalidClientError``."""
    limits = failure_limits()
    address = address_key(flask_request.remote_addr)
    claimed = presented_client_id(request)
    client = client_key(claimed) if claimed else None
    keys = {CLIENT_AUTH_BY_ADDRESS: address, **({CLIENT_AUTH_BY_CLIENT: client} if client is not None else {})}
    standing = limits.standing(keys, known=(client, address) if client is not None else None)
    known = standing.known
    wait = standing.waits.get(CLIENT_AUTH_BY_ADDRESS)
    if wait is None and not known:
        wait = standing.waits.get(CLIENT_AUTH_BY_CLIENT)
    if wait is not None:
        raise TooManyFailures(wait)
    try:
        authenticated = authenticate()
    except InvalidClientError:
        limits.failed(CLIENT_AUTH_BY_ADDRESS, address)
        if client is not None:
            limits.failed(CLIENT_AUTH_BY_CLIENT, client)
        raise
    if client is not None and not known:
        limits.remember_client_address(client, address)
    return authenticated
