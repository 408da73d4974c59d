"""Signing users in: the upstream IdP (in a worker) or the development login (docs/flows.md, flow 1).

The browser session holds only who signed in and when (signed cookie); the IdP's tokens stay
server-side, the IdP refresh token encrypted in the database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from .audit import audit
from .group_cache import GroupCache
from .groups import StaticGroupSource
from .identities import Identities
from .upstream_idp import LoginState, UpstreamIdP

logger = logging.getLogger(__name__)

SESSION_KEY = "login"
#: How long a browser login is trusted before the user must sign in again.
LOGIN_LIFETIME = 8 * 3600


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in: the POSIX user name, the upstream identity and a few profile claims."""

    username: str
    identity_id: int | None
    auth_time: int
    claims: dict = field(default_factory=dict)

    def to_session(self) -> dict:
        return asdict(self)

    @classmethod
    def from_session(cls, data: object) -> "SignedIn | None":
        if not isinstance(data, dict):
            return None
        try:
            signed_in = cls(str(data["username"]), data.get("identity_id"), int(data["auth_time"]),
                            dict(data.get("claims") or {}))
        except (KeyError, TypeError, ValueError):
            return None
        return signed_in if time.time() - signed_in.auth_time < LOGIN_LIFETIME else None


class Logins:
    """Sign-in: the upstream IdP's code exchange, or the development login's password check."""

    def __init__(self, idp: UpstreamIdP | None, groups: GroupCache, identities: Identities):
        self.idp = idp
        self.groups = groups
        self.identities = identities

    def finish_idp_login(self, state: dict, params: dict) -> dict:
        """Exchange the IdP's code, validate the id token, record the identity, warm the user's groups.

        Runs in a Celery worker; returns the :class:`SignedIn` as a dict. Raises the
        ``UpstreamLoginError`` / ``UpstreamUnavailable`` of the IdP client. Flushes.
        """
        if self.idp is None:
            raise RuntimeError("no upstream IdP is configured (IDP_ADDRESS)")
        login = self.idp.finish_login(params, LoginState.from_dict(state))
        identity = self.identities.record_login(self.idp.metadata()["issuer"], login)
        self.groups.get(login.username)  # resolve the POSIX identity now: the consent page needs it
        claims = {k: login.claims[k] for k in ("name", "email") if isinstance(login.claims.get(k), str)}
        audit("login", "signed-in", subject=login.username, idp_subject=login.subject)
        return SignedIn(login.username, identity.id, int(time.time()), claims).to_session()

    def development_login(self, username: str, password: str) -> SignedIn | None:
        """Check a development user's password (``config/dev-users.json``)."""
        source = self.groups.source
        if not isinstance(source, StaticGroupSource) or not source.check_password(username, password):
            audit("login", "refused", subject=username[:64], reason="development login: wrong user or password")
            return None
        audit("login", "signed-in", subject=username, method="development")
        return SignedIn(username, None, int(time.time()), source.profile_claims(username))
