"""Users as the upstream IdP knows them: recorded at login, re-checked on refresh (docs/flows.md, flow 3)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import UpstreamIdentity
from .refresh_records import IDP_CHECKED, FamilyRecord
from .secrets import SecretBox
from .upstream_idp import UpstreamIdP, UpstreamLogin, UpstreamUnavailable, UpstreamUserDisabled

logger = logging.getLogger(__name__)


class IdentityCheckFailed(Exception):
    """The IdP no longer vouches for the user: the token family must end. ``disabled_at`` is set
    when the IdP said the user is disabled (to be recorded with :meth:`Identities.mark_disabled`)."""

    def __init__(self, message: str, disabled_at: int | None = None):
        super().__init__(message)
        self.disabled_at = disabled_at


class Identities:
    """Upstream identities: recorded at each login, re-checked at the IdP on refresh. Flushes;
    callers commit."""

    def __init__(self, box: SecretBox, idp: UpstreamIdP | None, recheck_interval: int):
        self.box = box
        self.idp = idp
        self.recheck_interval = recheck_interval

    def record_login(self, issuer: str, login: UpstreamLogin) -> UpstreamIdentity:
        """Create or update the identity, keeping the IdP refresh token encrypted. Flushes."""
        now = int(time.time())
        identity = db.session.execute(select(UpstreamIdentity).where(
            UpstreamIdentity.issuer == issuer, UpstreamIdentity.subject == login.subject)).scalar_one_or_none()
        if identity is None:
            identity = UpstreamIdentity(issuer=issuer, subject=login.subject, username=login.username,
                                        created_at=now, last_login_at=now)
            db.session.add(identity)
        identity.username = login.username
        identity.last_login_at = identity.last_checked_at = now
        identity.disabled_at = None
        if login.refresh_token:
            identity.refresh_token = self.box.encrypt(login.refresh_token.encode())
        db.session.flush()
        return identity

    @staticmethod
    def mark_disabled(session: Session, identity_id: int, when: int) -> None:
        """Record that the IdP disabled the user (in ``session``: the refusal's own transaction)."""
        identity = session.get(UpstreamIdentity, identity_id)
        if identity is not None:
            identity.disabled_at = when

    def recheck_due(self, family: FamilyRecord, now: int | None = None) -> bool:
        """Whether the family's user must be asked at the IdP now: there is an IdP, the family came
        from a login there, and its last check is older than ``IDP_RECHECK_INTERVAL``."""
        if self.idp is None or family.identity_id is None:
            return False
        now = int(time.time()) if now is None else now
        return not (family.idp_checked_at and now - family.idp_checked_at < self.recheck_interval)

    def recheck(self, session: Session, family: FamilyRecord, now: int | None = None) -> None:
        """Ask the IdP about the family's user when :meth:`recheck_due`, in ``session``: a short
        transaction of its own, which the caller commits whatever the refresh then decides, so
        the IdP refresh token it rotates is kept (the IdP has already forgotten the old one).

        Raises :class:`IdentityCheckFailed` when the user was disabled there, and lets
        ``UpstreamUnavailable`` through (answered 503: the family stays, the client retries).
        """
        now = int(time.time()) if now is None else now
        if self.idp is None or not self.recheck_due(family, now):
            return
        # locked (PostgreSQL): two refreshes of one user must not both spend the rotating IdP token
        identity = session.get(UpstreamIdentity, family.identity_id, with_for_update=True)
        if identity is None or identity.disabled_at is not None:
            raise IdentityCheckFailed("the user is no longer known at the identity provider")
        if identity.refresh_token is None:
            raise IdentityCheckFailed("the identity provider gave no refresh token to re-check the user; log in again")
        try:
            rotated = self.idp.recheck(self.box.decrypt(identity.refresh_token).decode())
        except UpstreamUserDisabled:
            logger.info("user %s was disabled at the IdP", identity.username)
            raise IdentityCheckFailed("the user was disabled at the identity provider", disabled_at=now) from None
        except UpstreamUnavailable:
            raise
        if rotated:
            identity.refresh_token = self.box.encrypt(rotated.encode())
        identity.last_checked_at = now
        session.connection().execute(IDP_CHECKED, {"family_id": family.id, "checked_at": now})
