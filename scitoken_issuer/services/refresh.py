"""Refresh-token families (SPEC §5.3): opaque tokens stored as keyed hashes, rotated on use."""

from __future__ import annotations

import logging
import time

from sqlalchemy import delete, select, update

from ..extensions import db
from ..models import IssuedToken, RefreshFamily, RefreshToken
from .audit import audit
from .secrets import SecretBox, new_secret

logger = logging.getLogger(__name__)


class RefreshService:
    """Looks up, rotates and revokes refresh-token families. Adds/flushes; callers commit."""

    def __init__(self, box: SecretBox, lifetime: int, reuse_grace: int):
        self.box = box
        self.lifetime = lifetime
        self.reuse_grace = reuse_grace

    def lookup(self, token_string: str) -> tuple[RefreshToken, RefreshFamily] | None:
        if not isinstance(token_string, str) or not token_string or len(token_string) > 512:
            return None
        row = db.session.execute(
            select(RefreshToken, RefreshFamily).join(RefreshFamily, RefreshToken.family_id == RefreshFamily.id)
            .where(RefreshToken.token_hash == self.box.hash(token_string))).first()
        return (row[0], row[1]) if row else None

    def family(self, family_id: str) -> RefreshFamily | None:
        return db.session.get(RefreshFamily, family_id)

    def revoke_family(self, family_id: str, reason: str) -> None:
        """Revoke a family, every refresh token in it and every access token it gave."""
        now = int(time.time())
        family = db.session.get(RefreshFamily, family_id)
        if family is None or family.revoked_at is not None:
            return
        family.revoked_at = now
        family.revoked_reason = reason[:255]
        db.session.execute(update(IssuedToken).where(IssuedToken.family_id == family_id,
                                                     IssuedToken.revoked_at.is_(None)).values(revoked_at=now))
        db.session.flush()
        audit("revoke", "family-revoked", subject=family.subject, client_id=family.client_id,
              scope=family.scope, reason=reason, family=family_id)

    # -- issuing and rotating -----------------------------------------------------------------
    def new_family(self, client_id: str, subject: str, scope: str, identity_id: int | None) -> RefreshFamily:
        now = int(time.time())
        family = RefreshFamily(id=new_secret(24), client_id=client_id, subject=subject, scope=scope,
                               identity_id=identity_id, created_at=now, expires_at=now + self.lifetime,
                               idp_checked_at=now)
        db.session.add(family)
        return family

    def issue(self, family: RefreshFamily) -> str:
        """A new refresh token of ``family`` (the plaintext is returned once, only the hash kept)."""
        token = new_secret()
        now = int(time.time())
        db.session.add(RefreshToken(token_hash=self.box.hash(token), family_id=family.id, scope=family.scope,
                                    issued_at=now, expires_at=min(now + self.lifetime, family.expires_at)))
        return token

    def check_presented(self, token: RefreshToken, family: RefreshFamily, now: float | None = None) -> str | None:
        """Why a presented refresh token may not be used (None when it may).

        A token already rotated is a replay unless it comes back within the grace window (a
        client retrying a request whose answer it lost): a replay revokes the whole family.
        """
        now = time.time() if now is None else now
        if family.revoked_at is not None:
            return "the refresh token was revoked"
        if min(token.expires_at, family.expires_at) <= now:
            return "the refresh token has expired"
        if token.rotated_at is not None and now - token.rotated_at > self.reuse_grace:
            self.revoke_family(family.id, "refresh token reused after rotation")
            return "refresh token reuse detected: every token of this authorization was revoked"
        return None

    def rotate(self, token: RefreshToken) -> None:
        """Mark ``token`` used. A concurrent use within the grace window finds it already marked."""
        db.session.execute(update(RefreshToken).where(RefreshToken.token_hash == token.token_hash,
                                                      RefreshToken.rotated_at.is_(None))
                           .values(rotated_at=int(time.time())))

    def purge_expired(self, now: int | None = None) -> int:
        """Delete families (and their tokens) that expired; their access tokens expired long ago."""
        now = int(time.time()) if now is None else now
        doomed = select(RefreshFamily.id).where(RefreshFamily.expires_at < now)
        db.session.execute(delete(RefreshToken).where(RefreshToken.family_id.in_(doomed)))
        result = db.session.execute(delete(RefreshFamily).where(RefreshFamily.expires_at < now))
        return result.rowcount or 0
