"""RFC 8628 device authorizations: durable in the database, fast through Redis (RFC 8628 §3).

A device authorization is a row (device code stored as a keyed hash). While it is pending, the
polling token endpoint reads its state from a small Redis hash and never touches the database
(one round trip: a script reads the hash and keeps the poll pace, RFC 8628 §3.5; the client
comes from the process's copy, docs/revocation.md). The row and
the user's decision are announced in Redis only after their transaction commits (an after-commit
hook), so the decision is durable before the Redis hash says decided, and the next poll reads
the outcome from the database and consumes it once.
The decision a user makes on the verification page is recorded with the row before a worker is
asked to decide the scopes; a pending poll that finds it still unrecorded ``RESUME_AFTER`` seconds
later sends it to a worker again, so a task lost with its worker or with Redis's data is not a
lost approval.
Without Redis every poll reads its row and records its pace in one UPDATE (two prebuilt
statements, each on a connection of its own: a pending answer opens no ORM session). Either way
nothing lives only in a web process, so a restart of the web processes loses nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import redis
from sqlalchemy import and_, bindparam, case, select, update

from ..extensions import after_commit, db
from ..models import DeviceCode
from .secrets import SecretBox, new_secret

logger = logging.getLogger(__name__)

_codes = DeviceCode.__table__
#: a poll's view of its row when Redis does not answer (built once)
POLL_ROW = select(_codes.c.client_id, _codes.c.expires_at, _codes.c.interval, _codes.c.status,
                  _codes.c.requested_at).where(_codes.c.device_code_hash == bindparam("digest"))
#: the pace without Redis: record this poll; a step slower when the previous came too soon
PACE = update(_codes).where(_codes.c.device_code_hash == bindparam("digest")).values(
    last_poll_at=bindparam("now"),
    interval=case((and_(_codes.c.last_poll_at.is_not(None),
                        bindparam("now") - _codes.c.last_poll_at < _codes.c.interval),
                   _codes.c.interval + bindparam("step")), else_=_codes.c.interval),
).returning(_codes.c.interval)

#: Seconds after which a decision the page accepted and no worker recorded is sent to a worker again.
RESUME_AFTER = 10
#: the claim of one poll (of any process) to send an unrecorded decision again: the request, or no row
RESUME = update(_codes).where(
    _codes.c.device_code_hash == bindparam("digest"), _codes.c.status == "pending",
    _codes.c.expires_at > bindparam("now"), _codes.c.requested_at <= bindparam("due"),
).values(requested_at=bindparam("now")).returning(_codes.c.requested)

#: RFC 8628 §6.1: 20 consonants, no vowels (no words) and no look-alikes; 10 of them = 43 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 10
#: RFC 8628 §3.5: each slow_down adds 5 seconds to the interval.
SLOW_DOWN_STEP = 5

#: KEYS: the state hash, the pace key. While pending: mark this poll (the pace key lives one
#: interval) or, if the previous poll was sooner than the interval, add SLOW_DOWN_STEP to it.
#: Returns the hash, with ``too_fast`` 0/1 when pending; {} when there is no hash.
POLL_SCRIPT = """
local state = redis.call('HGETALL', KEYS[1])
if #state == 0 then return state end
local fields = {}
for i = 1, #state, 2 do fields[state[i]] = state[i + 1] end
if fields['decided'] ~= '0' then return state end
local too_fast = 0
if not redis.call('SET', KEYS[2], 1, 'NX', 'PX', tonumber(fields['interval']) * 1000) then
  redis.call('HINCRBY', KEYS[1], 'interval', ARGV[1])
  too_fast = 1
end
table.insert(state, 'too_fast')
table.insert(state, tostring(too_fast))
return state
"""

#: KEYS: the state hash. ARGV: a field and its value, set only in a hash ``announce`` wrote (with
#: its expiry); once Redis has lost the hash, polls read the row, and no key is left without one.
SET_IF_ANNOUNCED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """``WDJBMJHTCK`` → ``WDJBM-JHTCK`` for people to read and type."""
    return f"{code[:5]}-{code[5:]}"


def normalize_user_code(text: object) -> str | None:
    """What the user typed, in any case, with or without the dash or spaces; None if it cannot be one."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    code = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(code) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in code):
        return None
    return code


@dataclass(frozen=True)
class PollState:
    """What a poll needs: whose code it is, until when, and whether a decision may exist."""

    device_code_hash: str
    client_id: str
    expires_at: int
    interval: int
    decided: bool
    too_fast: bool | None = None  # already decided by the Redis poll script
    requested_at: int | None = None  # when the user's decision was last handed to a worker


class DeviceFlow:
    """Creates device authorizations, records decisions, and answers polls."""

    def __init__(self, box: SecretBox, redis_client: redis.Redis | None, lifetime: int, interval: int):
        self.box = box
        self.redis = redis_client
        self.lifetime = lifetime
        self.interval = interval
        self._poll = redis_client.register_script(POLL_SCRIPT) if redis_client is not None else None
        self._set_field = redis_client.register_script(SET_IF_ANNOUNCED) if redis_client is not None else None

    def _key(self, device_code_hash: str) -> str:
        return f"scitoken-issuer:device:{device_code_hash}"

    # -- device authorization (RFC 8628 §3.1–3.2) ---------------------------------------------
    def create(self, client_id: str, scope: str, device_code: str, user_code: str,
               audience: str | None = None) -> DeviceCode:
        """A pending authorization; ``audience`` (space separated) is what its tokens will carry."""
        now = int(time.time())
        row = DeviceCode(device_code_hash=self.box.hash(device_code), user_code=user_code, client_id=client_id,
                         scope=scope, issued_at=now, expires_at=now + self.lifetime, interval=self.interval,
                         status="pending", claims={}, audience=audience)
        db.session.add(row)
        state = PollState(row.device_code_hash, client_id, row.expires_at, row.interval, decided=False)
        after_commit(lambda: self.announce(state))
        return row

    def announce(self, state: PollState) -> None:
        """After the row is committed: publish the pending state for fast polling."""
        if self.redis is None:
            return
        key = self._key(state.device_code_hash)
        try:
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"client_id": state.client_id, "expires_at": state.expires_at,
                                    "interval": state.interval, "decided": 0})
            pipe.expireat(key, state.expires_at + 60)
            pipe.execute()
        except redis.RedisError as exc:  # polls fall back to the database
            logger.warning("device state not published to Redis: %s", type(exc).__name__)

    def pending_by_user_code(self, user_code: str) -> DeviceCode | None:
        row = self.unexpired_by_user_code(user_code)
        return row if row is not None and row.status == "pending" else None

    def unexpired_by_user_code(self, user_code: str) -> DeviceCode | None:
        """The authorization of a user code until it expires, pending or decided."""
        row = db.session.execute(select(DeviceCode).where(DeviceCode.user_code == user_code)).scalar_one_or_none()
        if row is None or row.expires_at <= time.time():
            return None
        return row

    @staticmethod
    def accepted_decision(row: DeviceCode) -> tuple[str, bool] | None:
        """Who decided ``row`` and whether they approved, once the verification page accepted a
        decision (recorded by a worker or not yet); None while it awaits one."""
        if row.requested:
            return row.requested["username"], bool(row.requested["approved"])
        if row.status != "pending" and row.subject is not None:
            return row.subject, row.status != "denied"
        return None

    # -- the user's decision (verification page, then worker) --------------------------------
    def request_decision(self, row: DeviceCode, username: str, identity_id: int | None, approved: bool) -> bool:
        """Record the decision the verification page accepted, with the caller's commit, before
        a worker decides the scopes and records the outcome: until then :meth:`resume` may send
        it to a worker again. The first decision wins: False (nothing recorded) when one was
        already accepted — a double submit, a reload, another tab — and ``row`` then shows that one."""
        now, digest = int(time.time()), row.device_code_hash
        requested = {"username": username, "identity_id": identity_id, "approved": approved}
        result = db.session.execute(
            update(DeviceCode).where(DeviceCode.device_code_hash == digest, DeviceCode.status == "pending",
                                     DeviceCode.requested_at.is_(None))
            .values(requested=requested, requested_at=now))
        if result.rowcount != 1:
            db.session.refresh(row)
            return False
        after_commit(lambda: self._mark(digest, "requested", now))
        return True

    def resume(self, state: PollState, now: float | None = None) -> dict | None:
        """The decision accepted for a pending authorization that no worker has recorded within
        ``RESUME_AFTER`` seconds (its task died with a worker, or Redis lost it), for this poll to
        send again: ``{"username", "identity_id", "approved"}``, or None. One statement claims it,
        so one poll of all processes sends it, once every ``RESUME_AFTER`` seconds; it commits on
        its own, as the pending answer rolls back."""
        if state.decided or state.requested_at is None:
            return None
        now = int(time.time() if now is None else now)
        if now - state.requested_at < RESUME_AFTER:
            return None
        with db.engine.begin() as connection:
            row = connection.execute(RESUME, {"digest": state.device_code_hash, "now": now,
                                              "due": now - RESUME_AFTER}).first()
        if row is None or not row.requested:
            return None
        self._mark(state.device_code_hash, "requested", now)
        return dict(row.requested)

    def _mark(self, device_code_hash: str, field: str, value: int) -> None:
        if self._set_field is None:
            return
        try:
            self._set_field(keys=[self._key(device_code_hash)], args=[field, value])
        except redis.RedisError as exc:  # polls then read the row
            logger.warning("device state %s not published to Redis: %s", field, type(exc).__name__)

    def record_decision(self, device_code_hash: str, *, approved: bool, subject: str, identity_id: int | None,
                        granted_scope: str | None = None, groups: list[str] | None = None,
                        reason: str | None = None, refused: bool = False) -> bool:
        """Record approval, denial by the user, or refusal of a scope (``refused``: polls answer
        ``invalid_scope``) of a pending authorization (flushes); False if not pending."""
        status = "approved" if approved else "refused" if refused else "denied"
        result = db.session.execute(
            update(DeviceCode).where(DeviceCode.device_code_hash == device_code_hash,
                                     DeviceCode.status == "pending", DeviceCode.expires_at > int(time.time()))
            .values(status=status, subject=subject, identity_id=identity_id,
                    granted_scope=granted_scope, denial_reason=reason, decided_at=int(time.time()),
                    claims={"groups": groups or []}))
        return result.rowcount == 1

    def signal(self, device_code_hash: str) -> None:
        """After the decision is committed: tell pollers to read the database."""
        self._mark(device_code_hash, "decided", 1)

    # -- polling (RFC 8628 §3.4–3.5) ----------------------------------------------------------
    def poll_state(self, device_code: str) -> PollState | None:
        if not isinstance(device_code, str) or not device_code or len(device_code) > 256:
            return None
        digest = self.box.hash(device_code)
        if self._poll is not None:
            key = self._key(digest)
            try:
                flat = self._poll(keys=[key, f"{key}:poll"], args=[SLOW_DOWN_STEP])
            except redis.RedisError:
                flat = None
            state = dict(zip(flat[::2], flat[1::2])) if flat else None
            if state and state.get(b"decided") == b"0":
                requested = state.get(b"requested")
                return PollState(digest, state[b"client_id"].decode(), int(state[b"expires_at"]),
                                 int(state[b"interval"]), decided=False, too_fast=state[b"too_fast"] == b"1",
                                 requested_at=int(requested) if requested else None)
        # a read of its own: no ORM session to open, and roll back after the pending answer
        with db.engine.connect() as connection:
            row = connection.execute(POLL_ROW, {"digest": digest}).first()
        if row is None:
            return None
        return PollState(digest, row.client_id, row.expires_at, row.interval, decided=row.status != "pending",
                         requested_at=row.requested_at)

    def decision(self, device_code_hash: str) -> DeviceCode | None:
        return db.session.get(DeviceCode, device_code_hash)

    def too_fast(self, state: PollState, now: float | None = None) -> bool:
        """True when this poll came sooner than ``interval`` after the previous one (then the
        interval grows by 5 s, RFC 8628 §3.5)."""
        now = time.time() if now is None else now
        if state.too_fast is not None:
            return state.too_fast
        if self.redis is not None and not state.decided:
            try:
                key = self._key(state.device_code_hash)
                if self.redis.set(f"{key}:poll", 1, nx=True, px=state.interval * 1000):
                    return False
                self.redis.hincrby(key, "interval", SLOW_DOWN_STEP)
                return True
            except redis.RedisError:
                pass  # fall through to the database
        # one statement in a short transaction of its own (a connection, no ORM session): the
        # slower pace must outlive the error answer. It records this poll and adds the step when
        # the previous one came sooner than the interval; the interval it returns grew exactly
        # then (a concurrent poll's step is also this poll's: it came right after that one).
        with db.engine.begin() as connection:
            row = connection.execute(
                PACE, {"digest": state.device_code_hash, "now": int(now), "step": SLOW_DOWN_STEP}).first()
        return row is not None and row.interval > state.interval

    def consume(self, device_code_hash: str) -> bool:
        """Mark an approved authorization used; exactly one poll wins. Its Redis state goes once
        that is committed (a poll that then fails keeps both, and the next poll reads the row)."""
        result = db.session.execute(
            update(DeviceCode).where(DeviceCode.device_code_hash == device_code_hash,
                                     DeviceCode.status == "approved").values(status="consumed"))
        if result.rowcount == 1 and self.redis is not None:
            after_commit(lambda: self._forget(device_code_hash))
        return result.rowcount == 1

    def _forget(self, device_code_hash: str) -> None:
        try:
            self.redis.delete(self._key(device_code_hash))
        except redis.RedisError:
            pass  # its hash says decided: the next poll reads the consumed row and is refused


def new_device_code() -> str:
    return new_secret()
