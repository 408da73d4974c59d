"""The pushed shared-state version across real gunicorn workers (docs/revocation.md, "How quickly
every process sees a change"): two workers on a redis-server of their own, holding copies that
never age out (``SHARED_STATE_MAX_AGE=3600``). Hot-path requests send Redis nothing; an RFC 7009
revocation answered by one worker is inactive at RFC 7662 introspection on the other at once,
round after round; killed subscriptions and a stopped Redis fall back without a wrong or a 5xx
answer, and the subscriptions come back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from scitoken_issuer.extensions import db
from scitoken_issuer.services.state_push import CHANNEL

from .conftest import make_app
from .support.processes import wait_until
from .support.redis_server import RedisServer, monitored
from .test_revocation_workers import Workers, register, token_request
from .test_state_push import beside_failure_counters

CONCURRENT = 8
#: Rounds in which the revocation and an introspection were answered by different workers.
CROSS_ROUNDS = 6


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    admin = redis.Redis.from_url(server.url)
    server.admin = admin
    yield server
    admin.close()
    server.destroy()


def start_workers(tmp_path, own_redis, max_age: int = 3600) -> Workers:
    server = Workers(tmp_path, own_redis.url, max_age=max_age)
    app = make_app(tmp_path, **{k: v for k, v in server.settings.items() if k != "SHARED_STATE_MAX_AGE"})
    with app.app_context():
        db.engine.dispose()
    server.process.start().wait_for_port(server.port, timeout=60)
    server.app = app
    return server


@pytest.fixture
def workers(tmp_path, own_redis):
    server = start_workers(tmp_path, own_redis)
    yield server
    server.process.stop()


def subscribers(server: RedisServer) -> int:
    return server.admin.pubsub_numsub(CHANNEL)[0][1]


def introspect(url: str, auth, token: str, times: int = CONCURRENT) -> set[bool]:
    """``active`` of concurrent introspections of ``token``, each on a new connection."""
    def ask(_):
        response = requests.post(f"{url}/auth/introspect", data={"token": token}, auth=auth, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["active"]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        return set(pool.map(ask, range(times)))


def warm(workers: Workers, own_redis: RedisServer, auth, token: str) -> None:
    """Until both workers are subscribed and hold copies under the pushed version."""
    def ready() -> bool:
        mark = workers.log_size()
        assert introspect(workers.url, auth, token, 16) == {True}
        return subscribers(own_redis) == 2 and len(workers.answered_since(mark)) == 2
    wait_until(ready, 30, "both workers subscribed")
    assert introspect(workers.url, auth, token, 16) == {True}


def answers(workers: Workers, mark: int) -> list[tuple[str, str, str]]:
    """(pid, path, status) of every answer logged after ``mark``."""
    lines = workers.access_log.read_text()[mark:].splitlines()
    return [(pid, path, status) for pid, _method, path, status in (line.split() for line in lines)]


def test_hot_paths_send_redis_nothing_for_shared_state(workers, own_redis):
    """RFC 6749 §4.4 and RFC 7662 §2: with both workers subscribed, client-credentials tokens and
    introspections (each on a new connection, answered by both workers) send Redis no command
    about shared state (Redis MONITOR): only the failure counters' read, at most once a second
    (docs/security-web.md)."""
    service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
    token = token_request(workers.url, service, grant_type="client_credentials")["access_token"]
    warm(workers, own_redis, service, token)
    mark = workers.log_size()

    def both(_):
        token_request(workers.url, service, grant_type="client_credentials")
        return requests.post(f"{workers.url}/auth/introspect", data={"token": token}, auth=service,
                             timeout=30).json()["active"]
    started = time.monotonic()
    with monitored(own_redis.url) as seen, ThreadPoolExecutor(CONCURRENT) as pool:
        assert set(pool.map(both, range(48))) == {True}
    assert len(workers.answered_since(mark)) == 2
    # the failure counters' read: at most once a second per worker (docs/security-web.md)
    assert beside_failure_counters(seen) == [] and len(seen) <= 2 * (1 + int(time.monotonic() - started))


def test_revocation_answered_by_one_worker_is_inactive_on_the_other_at_once(workers, own_redis):
    """RFC 7009 §2.1 / RFC 7662 §2.2, round after round: once /auth/revoke has answered (on
    either worker), every introspection of that token on every worker is inactive; another
    token stays active."""
    service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
    kept = token_request(workers.url, service, grant_type="client_credentials")["access_token"]
    warm(workers, own_redis, service, kept)
    cross = rounds = 0
    while cross < CROSS_ROUNDS:
        rounds += 1
        assert rounds <= 60, f"only {cross} rounds had the revocation and an introspection on different workers"
        token = token_request(workers.url, service, grant_type="client_credentials")["access_token"]
        assert introspect(workers.url, service, token) == {True}
        mark = workers.log_size()
        revoked = requests.post(f"{workers.url}/auth/revoke", data={"token": token}, auth=service, timeout=30)
        assert revoked.status_code == 200
        assert introspect(workers.url, service, token) == {False}
        logged = answers(workers, mark)
        revoker = {pid for pid, path, _ in logged if path == "/auth/revoke"}
        asked = {pid for pid, path, _ in logged if path == "/auth/introspect"}
        cross += bool(asked - revoker)
    assert introspect(workers.url, service, kept) == {True}


def test_killed_subscriptions_fall_back_then_recover(workers, own_redis):
    """docs/revocation.md: Redis drops both workers' subscriptions (CLIENT KILL TYPE pubsub); a
    revocation made right then is still inactive on every worker; the workers subscribe again
    on their own, and the hot path goes back to sending Redis nothing."""
    service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
    tokens = [token_request(workers.url, service, grant_type="client_credentials")["access_token"]
              for _ in range(2)]
    warm(workers, own_redis, service, tokens[0])

    assert own_redis.admin.client_kill_filter(_type="pubsub") == 2
    mark = workers.log_size()
    assert requests.post(f"{workers.url}/auth/revoke", data={"token": tokens[0]}, auth=service,
                         timeout=30).status_code == 200
    assert introspect(workers.url, service, tokens[0], 16) == {False}
    assert introspect(workers.url, service, tokens[1], 16) == {True}
    assert {status for _, _, status in answers(workers, mark)} == {"200"}

    wait_until(lambda: subscribers(own_redis) == 2, 10, "both workers subscribed again")
    warm(workers, own_redis, service, tokens[1])
    with monitored(own_redis.url) as seen:
        assert introspect(workers.url, service, tokens[1], 32) == {True}
    assert beside_failure_counters(seen) == []
    assert requests.post(f"{workers.url}/auth/revoke", data={"token": tokens[1]}, auth=service,
                         timeout=30).status_code == 200
    assert introspect(workers.url, service, tokens[1], 16) == {False}


def test_stopped_redis_still_revokes_without_errors(tmp_path, own_redis):
    """docs/revocation.md: with Redis stopped, a revocation answers (no hang, no 5xx), the other
    worker sees it within SHARED_STATE_MAX_AGE, tokens are still issued; once Redis is back the
    workers subscribe again."""
    workers = start_workers(tmp_path, own_redis, max_age=1)
    try:
        service = register(workers.app, grant_types=["client_credentials"], scope="compute.read")
        tokens = [token_request(workers.url, service, grant_type="client_credentials")["access_token"]
                  for _ in range(2)]
        warm(workers, own_redis, service, tokens[1])
        own_redis.stop()
        mark = workers.log_size()
        assert requests.post(f"{workers.url}/auth/revoke", data={"token": tokens[0]}, auth=service,
                             timeout=30).status_code == 200
        wait_until(lambda: introspect(workers.url, service, tokens[0], 16) == {False}, 5, "the age bound")
        assert introspect(workers.url, service, tokens[1], 16) == {True}
        token_request(workers.url, service, grant_type="client_credentials")
        assert {status for _, _, status in answers(workers, mark)} == {"200"}
        assert len(workers.answered_since(mark)) == 2

        own_redis.start()
        wait_until(lambda: subscribers(own_redis) == 2, 30, "both workers subscribed again")
    finally:
        workers.process.stop()
