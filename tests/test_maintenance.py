"""Periodic work (docs/flows.md beat): key rotation, expiry cleanup, and the beat schedule."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from scitoken_issuer.background import beat_schedule
from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import AuthorizationCode, DeviceCode, RefreshFamily, RefreshToken, Revocation
from workers import tasks


def count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_cleanup_deletes_only_what_expired(app):
    now = int(time.time())
    rt = runtime()
    for expires in (now - 100_000, now + 3600):
        db.session.add(AuthorizationCode(code_hash=rt.secrets.hash(f"c{expires}"), client_id="c", redirect_uri="x",
                                         scope="", subject="alice", auth_time=now, expires_at=expires, claims={}))
        db.session.add(DeviceCode(device_code_hash=rt.secrets.hash(f"d{expires}"), user_code=f"U{expires}"[-10:],
                                  client_id="c", scope="", issued_at=now, expires_at=expires, interval=5,
                                  status="pending", claims={}))
        db.session.add(Revocation(kind="jti", value=f"j{expires}", revoked_at=now, expires_at=expires))
        family = RefreshFamily(id=f"f{expires}", client_id="c", subject="alice", scope="", created_at=now,
                               expires_at=expires)
        db.session.add(family)
        db.session.flush()
        db.session.add(RefreshToken(token_hash=rt.secrets.hash(f"r{expires}"), family_id=family.id, scope="",
                                    issued_at=now, expires_at=expires))
    db.session.commit()
    result = tasks.cleanup_expired()
    assert result == {"authorization_codes": 1, "device_codes": 1, "revocations": 1, "refresh_families": 1}
    for model in (AuthorizationCode, DeviceCode, Revocation, RefreshFamily, RefreshToken):
        assert count(model) == 1, model.__name__


def test_rotate_keys_task_creates_the_first_key_then_nothing(app):
    kid = tasks.rotate_keys()
    assert kid == runtime().keys.view(fresh=True).current.kid
    assert tasks.rotate_keys() is None  # idempotent: rotation is not due


def test_beat_schedule_covers_the_cron_work(app):
    settings = runtime().settings
    schedule = beat_schedule(settings)
    assert {"refresh-group-cache", "rotate-keys", "cleanup-expired"} <= set(schedule)
    assert schedule["refresh-group-cache"]["schedule"] <= max(60, settings.group_cache_ttl)
    for entry in schedule.values():
        assert entry["task"] in app.extensions["celery"].tasks
