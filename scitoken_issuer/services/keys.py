"""Signing keys: generation, encryption at rest, rotation and the published key set.

Keys live in the database, shared by every web and worker process, in one *chain* per algorithm:
the ``KEY_TYPE`` chain signs access tokens, the RS256 chain signs ID tokens (OpenID Connect Core
§15.1 requires RS256 support; with ``KEY_TYPE=RS256`` it is one chain doing both). Each chain
rotates the same way and every chain's keys are published. A key's state follows from time alone
(see :class:`~scitoken_issuer.models.SigningKey`), so no process has to flip states and two
processes can never disagree about which key signs. A key is inserted in a savepoint of the
caller's transaction (committed with it, at the edge); the unique ``generation`` (one sequence
over every chain) makes a race between processes harmless: the loser's insert waits for the
winner's commit, fails on the constraint, and the loser reads again and creates what is still
missing.
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
#: ID tokens are always signed with this algorithm (OpenID Connect Core §15.1, Discovery §3).
ID_TOKEN_ALG = "RS256"
#: Attempts to create a missing key when other processes keep winning the generation race.
CREATE_ATTEMPTS = 5


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
    """Creates, rotates and serves the signing keys of one app: one chain per algorithm in use."""

    def __init__(self, box: SecretBox, alg: str = "RS256", rsa_bits: int = 2048,
                 rotation_seconds: int = 90 * 86400, publish_seconds: int = 86400,
                 max_token_lifetime: int = 3600, clock: Callable[[], float] = time.time):
        self.box = box
        self.alg = alg  # access tokens
        self.id_token_alg = ID_TOKEN_ALG
        self.rsa_bits = rsa_bits
        self.rotation_seconds = rotation_seconds
        self.publish_seconds = publish_seconds
        self.retire_seconds = max_token_lifetime + CLOCK_SKEW
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: tuple[float, list[LoadedKey]] | None = None
        #: answers kept on a key-set copy (:meth:`_on_current_copy`): (the copy, when computed
        #: (clock), the keys) of :meth:`published`; (the copy, valid until (clock), the keys) of
        #: :meth:`signing_keys`
        self._published: tuple[tuple[float, list[LoadedKey]] | None, float, list[LoadedKey]] | None = None
        self._signing: tuple[tuple[float, list[LoadedKey]] | None, float, dict[str, LoadedKey]] | None = None

    @property
    def algs(self) -> tuple[str, ...]:
        """The chains this issuer signs with: the access-token algorithm, then the ID-token one."""
        return tuple(dict.fromkeys((self.alg, self.id_token_alg)))

    def roles(self, alg: str) -> list[str]:
        """What the chain of ``alg`` signs, for operators (``keys list``)."""
        return [role for role, chain in (("access tokens", self.alg), ("ID tokens", self.id_token_alg))
                if chain == alg]

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

    def chains(self, fresh: bool = False) -> list[str]:
        """Every algorithm with stored keys, the ones in use first."""
        return list(dict.fromkeys((*self.algs, *(k.alg for k in self._load(fresh)))))

    def view(self, alg: str | None = None, now: float | None = None, fresh: bool = False) -> KeySetView:
        """The chain of ``alg`` (default: the access-token one) at ``now``."""
        alg = alg or self.alg
        now = self.clock() if now is None else now
        keys = [k for k in self._load(fresh) if k.alg == alg]
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
        if current is not None and alg not in self.algs:
            # A chain no longer in use (KEY_TYPE changed): its last key signed at most until its
            # rotation would have replaced it, so it is retired once those tokens have expired.
            stopped_at = current.activates_at + self.rotation_seconds + self.publish_seconds
            if now < stopped_at + self.retire_seconds:
                retired.insert(0, current)
            current = None
        return KeySetView(current, upcoming, retired)

    def published(self, now: float | None = None, fresh: bool = False) -> list[LoadedKey]:
        """Every key a verifier may need: each chain's next, current and still-valid retired keys.

        Introspection asks this for every token: the answer for "now" is kept for a second of the
        clock, on the same copy of the key set (a key set changes in days, not seconds)."""
        clock, remembered = self.clock(), self._published
        if now is None and not fresh and self._on_current_copy(remembered) \
                and remembered[1] <= clock < remembered[1] + 1:
            return remembered[2]
        keys = [k for alg in self.chains(fresh) for k in self.view(alg, now, fresh).published]
        if now is None:
            self._published = (self._cache, clock, keys)
        return keys

    def signing_keys(self) -> dict[str, LoadedKey]:
        """The key that signs now in each chain in use; creates the first keys, or the next ones
        when rotation is due.

        Every token asks this, so the answer is kept while nothing can change it: the same copy
        of the key set (reloaded every ``CACHE_SECONDS``) and before the next moment a key
        activates or a rotation falls due."""
        remembered, now = self._signing, self.clock()
        if self._on_current_copy(remembered) and now < remembered[1]:
            return remembered[2]
        views = {alg: self.view(alg, now) for alg in self.algs}
        if any(v.current is None or self._rotation_due(v) for v in views.values()):
            self.ensure()
            views = {alg: self.view(alg, fresh=True) for alg in self.algs}
        missing = [alg for alg, v in views.items() if v.current is None]
        if missing:  # pragma: no cover - ensure() always leaves a current key
            raise RuntimeError(f"no {missing[0]} signing key could be created")
        keys = {alg: v.current for alg, v in views.items()}
        self._signing = (self._cache, self._next_change(views.values()), keys)
        return keys

    def _on_current_copy(self, remembered) -> bool:
        """Whether an answer kept as (copy, moment, answer) was computed from the key-set copy in
        use, and that copy is not yet due to be read again (``CACHE_SECONDS``)."""
        copy = self._cache
        return remembered is not None and copy is not None and remembered[0] is copy \
            and time.monotonic() - copy[0] < CACHE_SECONDS

    def _next_change(self, views) -> float:
        """When the signing keys of ``views`` stop being the answer: a key activates, or rotation is due."""
        moments = [k.activates_at for v in views for k in v.upcoming]
        moments += [v.current.activates_at + self.rotation_seconds - self.publish_seconds
                    for v in views if v.current is not None]
        return min(moments, default=0.0)

    def signing_key(self, alg: str | None = None) -> LoadedKey:
        """The key that signs now in the chain of ``alg`` (default: access tokens)."""
        return self.signing_keys()[alg or self.alg]

    def id_token_key(self) -> LoadedKey:
        """The key that signs ID tokens now (always RS256)."""
        return self.signing_key(self.id_token_alg)

    def jwks(self) -> dict:
        return {"keys": [k.public_jwk for k in self.published()]}

    # -- writing ------------------------------------------------------------------------------
    def _rotation_due(self, view: KeySetView) -> bool:
        if view.current is None or view.upcoming:
            return False
        return self.clock() >= view.current.activates_at + self.rotation_seconds - self.publish_seconds

    def ensure(self) -> list[LoadedKey]:
        """In each chain in use, create the first key or publish the next one when rotation is
        due. Idempotent; returns the keys it created."""
        created = []
        for alg in self.algs:
            for _attempt in range(CREATE_ATTEMPTS):
                view = self.view(alg, fresh=True)
                now = int(self.clock())
                if view.current is None:  # nothing signs: a key is needed now, whatever is upcoming
                    activates = now
                elif self._rotation_due(view):
                    activates = max(now + self.publish_seconds, view.current.activates_at + self.rotation_seconds)
                else:
                    break
                key = self._create(alg, activates_at=activates)
                if key is not None:
                    created.append(key)
                    break
        return created

    def rotate(self, immediately: bool = False, alg: str | None = None,
               withdraw: bool = False) -> list[LoadedKey]:
        """Publish a new key now in the chain of ``alg`` (default: every chain in use). It signs
        after the publish period, or at once if ``immediately`` (verifiers that cached the old
        key set meet an unknown kid, which scitokens-cpp refuses until its next timed refresh,
        docs/tokens.md "Access tokens") or if nothing signs in that chain
        yet (a fresh database: no verifier can have cached a key set without it).

        ``withdraw`` (a compromised key; implies ``immediately``): every other key of the chain is
        deleted, so it is no longer published and what it signed no longer verifies here, instead
        of staying published until its tokens expire (docs/tokens.md)."""
        now = int(self.clock())
        created = []
        for chain in (alg,) if alg else self.algs:
            at_once = immediately or withdraw or self.view(chain, fresh=True).current is None
            key = self._create(chain, activates_at=now if at_once else now + self.publish_seconds)
            if key is None:
                raise RuntimeError("another process rotated the key at the same moment; try again")
            if withdraw:
                db.session.execute(delete(SigningKey).where(SigningKey.alg == chain, SigningKey.kid != key.kid))
                logger.warning("withdrew every %s signing key but %s (compromised)", chain, key.kid)
                self._cache = self._published = None
            created.append(key)
        return created

    def _create(self, alg: str, activates_at: int) -> LoadedKey | None:
        keys = self._load(fresh=True)
        generation = keys[-1].generation + 1 if keys else 1
        if alg == "ES256":
            private = ECKey.generate_key("P-256", private=True)
        else:
            private = RSAKey.generate_key(self.rsa_bits, private=True)
        kid = private.thumbprint()  # RFC 7638
        public_jwk = {**private.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
        row = {"kid": kid, "generation": generation, "alg": alg,
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
                    kid, alg, generation, activates_at)
        self._cache = None
        return LoadedKey(kid, generation, alg, activates_at, private, public_jwk)

    def purge(self) -> int:
        """Delete keys no longer published (retired longer than any token they signed lives)."""
        keep = {k.kid for k in self.published(fresh=True)}
        doomed = [k.kid for k in self._load() if k.kid not in keep]
        if doomed:
            db.session.execute(delete(SigningKey).where(SigningKey.kid.in_(doomed)))
            self._cache = None
        return len(doomed)
