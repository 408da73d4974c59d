"""When a process's cached copy of shared state (clients, the revocation list) must be reloaded.

The token, introspection and device-poll paths read clients and the revocation list from a copy
each web process keeps, not from the database (docs/revocation.md). A copy is used only while

- it is younger than ``max_age`` (``SHARED_STATE_MAX_AGE``, 2 s by default): the bound within
  which a change made by another process is seen when Redis is not configured or cannot be
  reached; and
- with Redis, the version it was loaded under is still current. Every commit that changes clients
  or revocations sets and publishes a new random version right after the commit (a SQLAlchemy
  ``after_commit`` hook) and waits until every subscribed process has applied it
  (:mod:`~scitoken_issuer.services.state_push`), so every worker sees the change before the
  request that made it has answered. A process reads the version from memory while its
  subscription is healthy, and from Redis (one GET, once per web request: ``begin_request`` /
  ``end_request``) while it is not.

A change also invalidates the copies of the process that made it at commit, with or without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from .state_push import StatePush

logger = logging.getLogger(__name__)

#: The default bound for a change made in another process without Redis (seconds).
MAX_AGE = 2.0
_CHANGED = "scitoken_issuer.state_changed"


@dataclass(frozen=True)
class Stamp:
    """What a cached copy was loaded under."""

    shared: bytes | None  # the Redis version (None: no Redis, or Redis unreachable)
    local: int  # this process's change counter
    at: float  # time.monotonic()


class StateVersion:
    """One per app: hands out :class:`Stamp` s and announces committed changes."""

    KEY = "scitoken-issuer:state-version"

    def __init__(self, redis_client: redis.Redis | None, max_age: float = MAX_AGE, push: StatePush | None = None):
        self.redis = redis_client
        self.push = push
        self.max_age = max_age
        self._local = 0
        self._lock = threading.Lock()
        self._request = threading.local()  # gthread: one request per thread at a time

    def begin_request(self) -> None:
        self._request.active, self._request.stamp = True, None

    def end_request(self, _exc: BaseException | None = None) -> None:
        self._request.active, self._request.stamp = False, None

    def stamp(self) -> Stamp:
        """Now: from memory while the push subscription is healthy, else one Redis GET when Redis
        is configured (once per web request)."""
        if self.push is not None:
            shared = self.push.current()
            if shared is not None:
                return Stamp(shared, self._local, time.monotonic())
        if getattr(self._request, "active", False):
            if self._request.stamp is None or self._request.stamp.local != self._local:
                self._request.stamp = self._read()
            return self._request.stamp
        return self._read()

    def _read(self) -> Stamp:
        shared = None
        if self.redis is not None:
            try:
                shared = self.redis.get(self.KEY) or b"-"
            except redis.RedisError:
                shared = None
        return Stamp(shared, self._local, time.monotonic())

    def fresh(self, loaded: Stamp, now: Stamp) -> bool:
        """May a copy loaded under ``loaded`` still be used at ``now``?"""
        if now.at - loaded.at >= self.max_age or loaded.local != now.local:
            return False
        return now.shared is None or loaded.shared == now.shared

    def will_change(self, session: Session) -> None:
        """Announce a change when ``session`` commits (call when adding the change)."""
        session.info.setdefault(_CHANGED, set()).add(self)

    def changed(self) -> None:
        """A change was committed: invalidate this process's copies and, through Redis, every other's."""
        with self._lock:
            self._local += 1
        if self.redis is not None:
            try:
                if self.push is not None:
                    self.push.announce()
                else:
                    self.redis.set(self.KEY, uuid.uuid4().hex)
            except redis.RedisError as exc:  # other processes notice within max_age
                logger.warning("state change not announced through Redis: %s", type(exc).__name__)


@event.listens_for(Session, "after_commit")
def _announce_after_commit(session: Session) -> None:
    for version in session.info.pop(_CHANGED, ()):
        version.changed()
