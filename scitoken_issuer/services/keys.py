"""Signing keys: generation, encryption at rest, rotation and the published key set.

One ordered key set lives in the database and is shared by every web and worker process. A
key's state follows from time alone (see :class:`~scitoken_issuer.models.SigningKey`), so no
process has to flip states and two processes can never disagree about which key signs. A key is
inserted in a savepoint of the caller's transaction (committed with it, at the edge); the unique
``generation`` makes a race between processes harmless: the loser's insert waits for the
winner's commit, fails on the constraint, and the loser reads the winner's key.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import SigningKey
from .secrets import SecretBox

logger = logging.getLogger(__name__)

#: Clock skew allowed to verifiers when deciding a retired key may be dropped.
CLOCK_SKEW = 300
#: How long a process trusts its in-memory copy of the key set.
CACHE_SECONDS = 30


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    generation: int
    alg: str
    activates_at: int
    private: RSAKey | ECKey
    public_jwk: dict


@dataclass(frozen=True)
class KeySetView:
    """The key set at one instant: which key signs, which are published."""

    current: LoadedKey | None
    upcoming: list[LoadedKey]
    retired: list[LoadedKey]

    @property
    def published(self) -> list[LoadedKey]:
        return [k for k in (*self.upcoming, self.current, *self.retired) if k is not None]


class KeyStore:
    """Creates, rotates and serves signing keys for one app."""

    def __init__(self, box: SecretBox, alg: str = "RS256", rsa_bits: int = 2048,
                 rotation_seconds: int = 90 * 86400, publish_seconds: int = 86400,
                 max_token_lifetime: int = 3600, clock: Callable[[], float] = time.time):
        self.box = box
        self.alg = alg
        self.rsa_bits = rsa_bits
        self.rotation_seconds = rotation_seconds
        self.publish_seconds = publish_seconds
        self.retire_seconds = max_token_lifetime + CLOCK_SKEW
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: tuple[float, list[LoadedKey]] | None = None

    # -- reading ------------------------------------------------------------------------------
    def _load(self, fresh: bool = False) -> list[LoadedKey]:
        with self._lock:
            now = time.monotonic()
            if not fresh and self._cache and now - self._cache[0] < CACHE_SECONDS:
                return self._cache[1]
            rows = db.session.execute(select(SigningKey).order_by(SigningKey.generation)).scalars().all()
            known = {k.kid: k for k in self._cache[1]} if self._cache else {}
            keys = [known.get(row.kid) or self._decrypt(row) for row in rows]
            self._cache = (now, keys)
            return keys

    def _decrypt(self, row: SigningKey) -> LoadedKey:
        pem = self.box.decrypt(row.private_key)
        private = (RSAKey if row.alg == "RS256" else ECKey).import_key(pem)
        return LoadedKey(row.kid, row.generation, row.alg, row.activates_at, private, dict(row.public_jwk))

    def view(self, now: float | None = None, fresh: bool = False) -> KeySetView:
        now = self.clock() if now is None else now
        keys = self._load(fresh)
        active = [k for k in keys if k.activates_at <= now]
        current = active[-1] if active else None
        upcoming = [k for k in keys if k.activates_at > now]
        retired = []
        for index, older in enumerate(active[:-1]):
            # ``older`` stopped signing when a later generation activated; keep it while its
            # tokens may still be presented.
            stopped_at = min(k.activates_at for k in active[index + 1:])
            if now < stopped_at + self.retire_seconds:
                retired.append(older)
        retired.reverse()
        return KeySetView(current, upcoming, retired)

    def signing_key(self) -> LoadedKey:
        """The key that signs now; creates the first key, or the next one when rotation is due."""
        view = self.view()
        if view.current is None or self._rotation_due(view):
            self.ensure()
            view = self.view(fresh=True)
        if view.current is None:  # pragma: no cover - ensure() always leaves a current key
            raise RuntimeError("no signing key could be created")
        return view.current

    def jwks(self) -> dict:
        return {"keys": [k.public_jwk for k in self.view().published]}

    # -- writing ------------------------------------------------------------------------------
    def _rotation_due(self, view: KeySetView) -> bool:
        if view.current is None or view.upcoming:
            return False
        return self.clock() >= view.current.activates_at + self.rotation_seconds - self.publish_seconds

    def ensure(self) -> LoadedKey | None:
        """Create the first key, or publish the next one when rotation is due. Idempotent."""
        view = self.view(fresh=True)
        now = int(self.clock())
        if view.current is None and not view.upcoming:
            return self._create(1, activates_at=now)
        if self._rotation_due(view):
            activates = max(now + self.publish_seconds, view.current.activates_at + self.rotation_seconds)
            return self._create(view.current.generation + 1, activates_at=activates)
        return None

    def rotate(self, immediately: bool = False) -> LoadedKey:
        """Publish a new key now. It signs after the publish period, or at once if ``immediately``
        (for a compromised key: verifiers that cached the old key set will refetch on the new kid)."""
        keys = self._load(fresh=True)
        now = int(self.clock())
        generation = keys[-1].generation + 1 if keys else 1
        created = self._create(generation, activates_at=now if immediately else now + self.publish_seconds)
        if created is None:
            raise RuntimeError("another process rotated the key at the same moment; try again")
        return created

    def _create(self, generation: int, activates_at: int) -> LoadedKey | None:
        if self.alg == "ES256":
            private = ECKey.generate_key("P-256", private=True)
        else:
            private = RSAKey.generate_key(self.rsa_bits, private=True)
        kid = private.thumbprint()  # RFC 7638
        public_jwk = {**private.as_dict(private=False), "kid": kid, "alg": self.alg, "use": "sig"}
        row = {"kid": kid, "generation": generation, "alg": self.alg,
               "private_key": self.box.encrypt(private.as_pem(private=True)),
               "public_jwk": public_jwk, "created_at": int(self.clock()), "activates_at": activates_at}
        try:
            with db.session.begin_nested():  # a savepoint: a lost race rolls back only this insert
                db.session.execute(insert(SigningKey).values(**row))
        except IntegrityError:
            logger.info("signing key generation %d was created by another process", generation)
            self._cache = None
            return None
        logger.info("created signing key kid=%s alg=%s generation=%d activates_at=%d",
                    kid, self.alg, generation, activates_at)
        self._cache = None
        return LoadedKey(kid, generation, self.alg, activates_at, private, public_jwk)

    def purge(self) -> int:
        """Delete keys no longer published (retired longer than any token they signed lives)."""
        view = self.view(fresh=True)
        keep = {k.kid for k in view.published}
        doomed = [k.kid for k in self._load() if k.kid not in keep]
        if doomed:
            db.session.execute(delete(SigningKey).where(SigningKey.kid.in_(doomed)))
            self._cache = None
        return len(doomed)
