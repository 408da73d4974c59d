"""The group cache in front of a group source (docs/authorization.md): precomputed, bounded-stale, never wrong.

``get`` serves a user's groups from the cache while the entry is younger than ``ttl``
(``GROUP_CACHE_TTL``); older or missing entries are looked up live and stored. When the live
look-up raises :class:`GroupsUnavailable`, an entry younger than ``max_staleness`` is served
(logged), else ``GroupsUnavailable`` propagates and the caller answers 503 — a failure never turns
into a grant. Unknown users are cached as negative entries for ``negative_ttl``.

Storage is Redis (shared by every web/worker process) or a dict in this process. With Redis, a
small in-process *front* cache holds answers for ``front_ttl`` seconds (default 5, and never past
the entry's own ``ttl``) so the hot path is a dict lookup rather than a network round trip; other
processes therefore see a refresh at most ``front_ttl`` late, which is small against ``ttl``.
If Redis fails, ``get`` falls back to the live source (correct, just slower).

``precompute`` stores every user from one ``iter_users`` pass, in pipelined chunks, under a lock
so that two runs never overlap. Each Redis value is compact JSON ``[t, uid, gid, [gid | [gid,
name], …]]`` (``[t]`` for an unknown user), ``t`` being when the answer was read from the source.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

import redis

from scitoken_issuer import metrics
from scitoken_issuer.services.groups import GroupsError, GroupSource, GroupsUnavailable
from scitoken_issuer.services.users import PosixUser

logger = logging.getLogger(__name__)

FRONT_CACHE_MAX = 10_000


class PrecomputeInProgress(GroupsError):
    """Another precompute holds the lock; this one did nothing."""


@dataclass(frozen=True)
class PrecomputeStats:
    """What one precompute stored: users, distinct groups among them, and how long it took."""

    users: int
    groups: int
    seconds: float


class _Entry(NamedTuple):
    stored_at: float
    user: PosixUser | None


def encode_entry(entry: _Entry) -> str:
    """The compact Redis value for one cache entry."""
    user = entry.user
    if user is None:
        return json.dumps([entry.stored_at])
    groups = [[g, user.groups[g]] if g in user.groups else g for g in sorted(user.gids)]
    return json.dumps([entry.stored_at, user.uid, user.gid, groups], separators=(",", ":"),
                      ensure_ascii=False)


def decode_entry(name: str, raw: str | bytes) -> _Entry:
    data = json.loads(raw)
    if len(data) == 1:
        return _Entry(data[0], None)
    stored_at, uid, gid, groups = data
    names = {g[0]: g[1] for g in groups if isinstance(g, list)}
    gids = frozenset(g[0] if isinstance(g, list) else g for g in groups)
    return _Entry(stored_at, PosixUser(name, uid, gid, gids, names))


class _MemoryStore:
    """Entries in a dict of this process (no Redis configured)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.meta: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def read(self, name: str) -> _Entry | None:
        return self.entries.get(name)

    def write_many(self, items: Iterable[tuple[str, _Entry]]) -> None:
        self.entries.update(items)

    def lock(self, timeout: float) -> Any:
        return self._lock

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def read_meta(self) -> dict[str, Any] | None:
        return self.meta


class _RedisStore:
    """Entries as one string key per user under ``prefix``, expiring after ``expire`` seconds."""

    def __init__(self, client: redis.Redis, prefix: str, expire: float):
        self.client, self.prefix, self.expire = client, prefix, max(1, math.ceil(expire))

    def read(self, name: str) -> _Entry | None:
        raw = self.client.get(f"{self.prefix}u:{name}")
        return None if raw is None else decode_entry(name, raw)

    def write_many(self, items: Iterable[tuple[str, _Entry]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for name, entry in items:
            pipe.set(f"{self.prefix}u:{name}", encode_entry(entry), ex=self.expire)
        pipe.execute()

    def lock(self, timeout: float) -> Any:
        return self.client.lock(f"{self.prefix}precompute-lock", timeout=timeout)

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.client.set(f"{self.prefix}meta", json.dumps(meta))

    def read_meta(self) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}meta")
        return None if raw is None else json.loads(raw)


class GroupCache:
    """Users' POSIX groups from ``source``, cached in Redis (or this process) — see module doc."""

    def __init__(self, source: GroupSource, redis_client: redis.Redis | None = None, *,
                 ttl: float = 300, max_staleness: float = 3600, negative_ttl: float = 60,
                 prefix: str = "scitoken-issuer:groups:", front_ttl: float = 5.0,
                 chunk_size: int = 5000, lock_timeout: float = 900,
                 clock: Callable[[], float] = time.time):
        if min(ttl, max_staleness, negative_ttl) < 0:
            raise ValueError("cache lifetimes must not be negative")
        self.source = source
        # ttl 0 means always live (the cache then only bridges outages); staleness is at least ttl.
        self.ttl, self.max_staleness, self.negative_ttl = ttl, max(ttl, max_staleness), negative_ttl
        self.front_ttl = front_ttl if redis_client is not None else 0.0
        self.chunk_size, self.lock_timeout, self.clock = chunk_size, lock_timeout, clock
        self._store: _MemoryStore | _RedisStore = (
            _MemoryStore() if redis_client is None else _RedisStore(redis_client, prefix, max(self.max_staleness, negative_ttl)))
        self._front: dict[str, tuple[float, PosixUser | None]] = {}

    def get(self, username: str) -> PosixUser | None:
        """The user's identity and groups, or ``None`` for an unknown user.

        Raises GroupsUnavailable when the source is down and no entry is young enough.
        """
        now = self.clock()
        front = self._front.get(username)
        if front is not None and front[0] > now:
            metrics.group_cache_lookup("hit")
            return front[1]
        entry = self._read(username)
        if entry is not None:
            fresh_until = entry.stored_at + (self.ttl if entry.user else self.negative_ttl)
            if now < fresh_until:
                self._remember(username, entry.user, min(now + self.front_ttl, fresh_until))
                metrics.group_cache_lookup("hit")
                return entry.user
        metrics.group_cache_lookup("miss")
        try:
            user = self.source.lookup(username)
        except GroupsUnavailable:
            if entry is not None and now - entry.stored_at < self.max_staleness:
                logger.warning("group source unavailable; serving %r from cache, %.0f s old",
                               username, now - entry.stored_at)
                metrics.group_cache_lookup("stale")
                return entry.user
            raise
        self._write([(username, _Entry(now, user))])
        self._remember(username, user, now + min(self.front_ttl, self.ttl if user else self.negative_ttl))
        return user

    def precompute(self, source: GroupSource | None = None) -> PrecomputeStats:
        """Store every user of ``source`` (default: the cache's own) from one pass.

        Raises PrecomputeInProgress if another precompute holds the lock.
        """
        source = source or self.source
        lock = self._store.lock(self.lock_timeout)
        if not lock.acquire(blocking=False):
            raise PrecomputeInProgress("a group-cache precompute is already running")
        try:
            started = self.clock()
            clock_start = time.perf_counter()
            users, gids, batch = 0, set(), []
            for user in source.iter_users():
                users += 1
                gids.update(user.gids)
                batch.append((user.name, _Entry(started, user)))
                if len(batch) >= self.chunk_size:
                    self._store.write_many(batch)
                    batch = []
                    if hasattr(lock, "reacquire"):
                        lock.reacquire()  # keep the Redis lock alive through long passes
            self._store.write_many(batch)
            stats = PrecomputeStats(users, len(gids), time.perf_counter() - clock_start)
            self._store.write_meta({"generation": started, **stats.__dict__})
        finally:
            try:
                lock.release()
            except (redis.exceptions.LockError, RuntimeError):
                logger.warning("group-cache precompute lock expired before release")
        self._front.clear()
        logger.info("group cache precomputed: %d users, %d groups in %.1f s",
                    stats.users, stats.groups, stats.seconds)
        return stats

    def last_precompute(self) -> dict[str, Any] | None:
        """``{"generation", "users", "groups", "seconds"}`` of the last precompute, if any."""
        return self._store.read_meta()

    def _read(self, username: str) -> _Entry | None:
        try:
            return self._store.read(username)
        except (redis.exceptions.RedisError, ValueError, TypeError, LookupError) as exc:
            logger.warning("group cache read failed (%s); looking up live", exc)
            return None

    def _write(self, items: list[tuple[str, _Entry]]) -> None:
        try:
            self._store.write_many(items)
        except redis.exceptions.RedisError as exc:
            logger.warning("group cache write failed: %s", exc)

    def _remember(self, username: str, user: PosixUser | None, until: float) -> None:
        if self.front_ttl <= 0 or until <= self.clock():
            return
        if len(self._front) >= FRONT_CACHE_MAX:
            self._front.clear()
        self._front[username] = (until, user)
