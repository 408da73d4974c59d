"""Refresh-token families (SPEC §5.3): opaque tokens stored as keyed hashes, rotated on use."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update

from ..extensions import db
from ..models import IssuedToken, RefreshFamily, RefreshToken
from .audit import audit
from .secrets import SecretBox

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

    def family_revoked(self, family_id: str | None) -> bool:
        if family_id is None:
            return False
        family = db.session.get(RefreshFamily, family_id)
        return family is not None and family.revoked_at is not None

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
