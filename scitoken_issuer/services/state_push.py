"""Shared-state versions pushed through Redis pub/sub, so a request reads them from memory.

Every process that reads clients or the revocation list keeps one subscription to
:data:`CHANNEL` in a daemon thread (started on first use, again after a fork). A committed change
sets the version key and publishes the new version in one script; each subscriber stores it in
memory and acknowledges it by pushing to the version's ack list, and the writer waits for as many
acknowledgements as the publish reached (at most :data:`ACK_TIMEOUT`). So once the request that
made a change has answered, every subscribed process has applied it, and a request reads the
version without a round trip (docs/revocation.md, "How quickly every process sees a change").

While a subscription is not established, broke, or has unread data on its socket (a message not
yet applied, or the server's close), :meth:`Subscription.current` says None and the caller reads
the version key instead; the thread keeps resubscribing, and reads the key after each subscribe
so that no change is missed.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
import uuid
import weakref

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

CHANNEL = "scitoken-issuer:state-changes"
ACK_PREFIX = "scitoken-issuer:state-ack:"
#: How long a writer waits for every subscriber to acknowledge a change (seconds).
ACK_TIMEOUT = 1.0
#: How long an ack list outlives its change (seconds).
ACK_TTL = 10
#: A subscriber pings this often and gives its connection up after three silent periods (seconds).
HEARTBEAT = 5.0
#: Seconds before the first resubscribe attempt, doubled after each failure up to RETRY_MAX.
RETRY_FIRST, RETRY_MAX = 0.25, 5.0

#: KEYS: the version key. ARGV: the new version, the channel. Sets and publishes in one step, so
#: messages arrive in the order the key was set; returns how many subscribers got the message.
ANNOUNCE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('PUBLISH', ARGV[2], ARGV[1])
"""


class Subscription:
    """What request threads read: the version last pushed, while the subscription is healthy."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.version: bytes | None = None
        #: a duplicate of the subscription socket's descriptor (None: not subscribed): it stays
        #: open, and so readable once the server closes, whatever redis-py does with its own
        self.fd: int | None = None

    def current(self) -> bytes | None:
        """The version, from memory; None while it may be stale (not subscribed, or something
        unread on the socket: a message not applied yet, or the server's close)."""
        fd = self.fd
        if fd is None:
            return None
        watch = select.poll()
        watch.register(fd, select.POLLIN)
        unread = watch.poll(0)
        if unread or self.fd != fd:  # detached meanwhile: the descriptor may be another's now
            return None
        return self.version


class _Follower:
    """The thread's side: keeps one subscription alive and writes into a :class:`Subscription`
    while that still exists (it holds the Subscription weakly, and stops once it is gone)."""

    def __init__(self, url: str, key: str, subscription: Subscription):
        self.key = key
        self.ref = weakref.ref(subscription)
        # no retry: redis-py would reconnect and resubscribe on its own, without reading the key
        # (and the server would count a subscriber that is about to be closed)
        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3,
                                           retry=Retry(NoBackoff(), 0, supported_errors=()))
        self.ack_name = f"{socket.gethostname()}:{os.getpid()}".encode()
        self._was_healthy = False

    def run(self) -> None:
        delay, first = RETRY_FIRST, True
        try:
            while self.ref() is not None:
                try:
                    self._session()
                    return  # the Subscription is gone
                except (redis.RedisError, OSError) as exc:
                    if first or self._was_healthy:  # once per outage
                        logger.warning("state subscription unavailable (%s): reading the version per request",
                                       type(exc).__name__)
                first = False
                if self._was_healthy:
                    delay = RETRY_FIRST
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        finally:
            self.client.close()

    def _session(self) -> None:
        """Subscribe, read the key, then apply and acknowledge messages until the connection
        fails (raises) or the Subscription is gone (returns)."""
        self._was_healthy = False
        pubsub, fd = self.client.pubsub(), None
        try:
            pubsub.subscribe(CHANNEL)
            confirmed = pubsub.get_message(timeout=3)
            if not confirmed or confirmed["type"] != "subscribe":
                raise redis.ConnectionError("no subscription confirmation")
            version = self.client.get(self.key) or b"-"  # after subscribing: no change is missed
            subscription = self.ref()
            if subscription is None:
                return
            sock = getattr(pubsub.connection, "_sock", None)
            if sock is None:
                raise redis.ConnectionError("the subscription has no socket to watch")
            subscription.version = version
            fd = os.dup(sock.fileno())
            subscription.fd = fd
            del subscription
            self._was_healthy = True
            logger.info("state subscription established")
            heard = pinged = time.monotonic()
            while True:
                message = pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    heard = now
                    if message["type"] == "message" and not self._apply(message["data"]):
                        return
                elif now - heard > 3 * HEARTBEAT:
                    raise redis.ConnectionError("no answer to pings")
                if now - pinged >= HEARTBEAT:
                    pubsub.ping()
                    pinged = now
                if self.ref() is None:
                    return
        finally:
            subscription = self.ref()
            if subscription is not None:
                subscription.fd = None  # before closing: readers then ignore what they polled
            if fd is not None:
                os.close(fd)
            pubsub.close()

    def _apply(self, version: bytes) -> bool:
        subscription = self.ref()
        if subscription is None:
            return False
        subscription.version = version
        del subscription
        key = ACK_PREFIX.encode() + version
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, self.ack_name)
        pipe.expire(key, ACK_TTL)
        pipe.execute()
        return True


class StatePush:
    """One per app: the process's subscription and the writer's announcement of a change."""

    def __init__(self, url: str, client: redis.Redis, key: str):
        self.url = url
        self.client = client
        self.key = key
        self._announce = client.register_script(ANNOUNCE_SCRIPT)
        self._subscription: Subscription | None = None
        self._lock = threading.Lock()

    def subscription(self) -> Subscription:
        """This process's subscription, started now if this process has none (first use, or a
        fork: threads do not survive one)."""
        subscription = self._subscription
        if subscription is not None and subscription.pid == os.getpid():
            return subscription
        with self._lock:
            subscription = self._subscription
            if subscription is None or subscription.pid != os.getpid():
                subscription = Subscription()
                follower = _Follower(self.url, self.key, subscription)
                threading.Thread(target=follower.run, name="state-subscription", daemon=True).start()
                self._subscription = subscription
        return subscription

    def current(self) -> bytes | None:
        """The version from memory, or None: then read the key."""
        return self.subscription().current()

    def announce(self) -> None:
        """Set and publish a new version, then wait until every process the message reached has
        applied it (raises ``redis.RedisError`` when Redis cannot be reached)."""
        version = uuid.uuid4().hex
        reached = int(self._announce(keys=[self.key], args=[version, CHANNEL]))
        if reached:
            self._wait_for_acks(ACK_PREFIX + version, reached)

    def _wait_for_acks(self, key: str, expected: int) -> None:
        deadline, acked = time.monotonic() + ACK_TIMEOUT, 0
        while acked < expected:
            left = deadline - time.monotonic()
            if left <= 0 or self.client.blpop([key], timeout=max(left, 0.001)) is None:
                break
            acked += 1
            if acked < expected:  # those already there, in one round trip
                acked += len(self.client.lpop(key, expected - acked) or [])
        if acked < expected:
            logger.warning("%d of %d processes did not acknowledge a state change within %.1f s",
                           expected - acked, expected, ACK_TIMEOUT)
