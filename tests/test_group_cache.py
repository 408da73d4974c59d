"""docs/authorization.md: group memberships are precomputed, cached (Redis or in process) and served within
``GROUP_CACHE_TTL``; a miss falls back to a live look-up; while the source is down the cache is
served up to a bounded staleness, then GroupsUnavailable (503) — never a wrong grant.
"""

from __future__ import annotations

import threading

import pytest
import redis

from scitoken_issuer.services.group_cache import GroupCache, PrecomputeInProgress, decode_entry, encode_entry
from scitoken_issuer.services.groups import GroupsUnavailable
from scitoken_issuer.services.ldap_groups import LdapGroupSource
from scitoken_issuer.services.users import PosixUser

ALICE = PosixUser("alice", 10001, 10001, frozenset({10001, 5000, 7}), {10001: "alice", 5000: "physics"})
BOB = PosixUser("bob", 10002, 10002, frozenset({10002, 5000}), {5000: "physics"})


class FakeSource:
    """A group source whose answers, failures and calls the test controls."""

    def __init__(self, *users: PosixUser):
        self.users = {u.name: u for u in users}
        self.down = False
        self.lookups: list[str] = []
        self.during_pass = None

    def lookup(self, username):
        self.lookups.append(username)
        if self.down:
            raise GroupsUnavailable("source down")
        return self.users.get(username)

    def iter_users(self):
        if self.down:
            raise GroupsUnavailable("source down")
        for user in self.users.values():
            if self.during_pass:
                self.during_pass()
            yield user


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    """None (in-process store) or a client of the real redis-server fixture."""
    if request.param == "memory":
        yield None
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    client.close()


@pytest.fixture
def clock():
    return Clock()


def make(source, backend, clock, **kwargs):
    kwargs.setdefault("ttl", 300)
    kwargs.setdefault("max_staleness", 3600)
    return GroupCache(source, backend, clock=clock, **kwargs)


def test_hit_within_ttl_then_refresh(backend, clock):
    """docs/authorization.md: served from cache within GROUP_CACHE_TTL; looked up again after it."""
    source = FakeSource(ALICE)
    cache = make(source, backend, clock)
    assert cache.get("alice") == ALICE
    clock.now += 299
    assert cache.get("alice") == ALICE
    assert source.lookups == ["alice"]
    clock.now += 2
    assert cache.get("alice").groups == ALICE.groups
    assert source.lookups == ["alice", "alice"]


def test_membership_change_seen_after_ttl(backend, clock):
    """docs/authorization.md: a removed group stops counting once the entry is stale."""
    source = FakeSource(ALICE)
    cache = make(source, backend, clock, ttl=60)
    cache.get("alice")
    source.users["alice"] = PosixUser("alice", 10001, 10001, frozenset({10001}))
    clock.now += 61
    assert cache.get("alice").gids == {10001}


def test_unknown_user_cached_as_negative(backend, clock):
    source = FakeSource()
    cache = make(source, backend, clock, negative_ttl=30)
    assert cache.get("nobody") is None
    assert cache.get("nobody") is None
    assert source.lookups == ["nobody"]
    source.users["nobody"] = BOB
    clock.now += 31
    assert cache.get("nobody") == BOB


def test_stale_served_within_bound_then_unavailable(backend, clock):
    """docs/errors.md: source down → cached answer up to max_staleness, then GroupsUnavailable."""
    source = FakeSource(ALICE)
    cache = make(source, backend, clock, ttl=300, max_staleness=900)
    cache.get("alice")
    source.down = True
    clock.now += 899
    assert cache.get("alice") == ALICE
    assert source.lookups == ["alice", "alice"]  # it did try the source first
    clock.now += 2
    with pytest.raises(GroupsUnavailable):
        cache.get("alice")


def test_miss_while_source_down_is_unavailable(backend, clock):
    """docs/errors.md: nothing cached and the source down → GroupsUnavailable, not 'no groups'."""
    source = FakeSource(ALICE)
    source.down = True
    with pytest.raises(GroupsUnavailable):
        make(source, backend, clock).get("alice")


def test_precompute_stores_everyone_in_one_pass(backend, clock):
    """docs/authorization.md: the precompute pass fills the cache; later hits need no live look-up."""
    source = FakeSource(ALICE, BOB)
    cache = make(source, backend, clock, chunk_size=1)
    stats = cache.precompute()
    assert (stats.users, stats.groups) == (2, 4) and stats.seconds >= 0
    assert cache.get("alice") == ALICE and cache.get("bob") == BOB
    assert cache.get("alice").groups == ALICE.groups
    assert source.lookups == []
    assert cache.last_precompute()["users"] == 2
    clock.now += 301  # precomputed entries age like any other
    cache.get("alice")
    assert source.lookups == ["alice"]


def test_precomputes_cannot_overlap(backend, clock):
    """A second precompute while one runs does nothing and says so."""
    source = FakeSource(ALICE, BOB)
    cache = make(source, backend, clock)
    other = make(source, backend, clock) if backend is not None else cache
    raised = []

    def nested():
        if not raised:
            with pytest.raises(PrecomputeInProgress):
                other.precompute()
            raised.append(True)

    source.during_pass = nested
    assert cache.precompute().users == 2
    assert raised == [True]
    source.during_pass = None
    assert other.precompute().users == 2  # the lock was released


def test_redis_lock_is_shared_by_processes(redis_url):
    """The precompute lock lives in Redis, so caches in other processes respect it."""
    client = redis.Redis.from_url(redis_url)
    held = client.lock("scitoken-issuer:groups:precompute-lock", timeout=30)
    assert held.acquire(blocking=False)
    try:
        with pytest.raises(PrecomputeInProgress):
            GroupCache(FakeSource(ALICE), client).precompute()
    finally:
        held.release()
        client.close()


def test_prefix_namespaces_keys(redis_url, clock):
    client = redis.Redis.from_url(redis_url)
    GroupCache(FakeSource(ALICE), client, prefix="site-a:", clock=clock).precompute()
    assert client.exists("site-a:u:alice")
    assert all(k.startswith(b"site-a:") for k in client.keys("*"))
    other_source = FakeSource()
    assert GroupCache(other_source, client, prefix="site-b:", clock=clock).get("alice") is None
    assert other_source.lookups == ["alice"]
    assert 0 < client.ttl("site-a:u:alice") <= 3600
    client.close()


def test_redis_down_falls_back_to_live_lookup(redis_server, redis_url, clock):
    """docs/errors.md: Redis down → live answers (correct); Redis and source down → unavailable."""
    client = redis.Redis.from_url(redis_url, socket_timeout=1, retry=None)
    source = FakeSource(ALICE)
    cache = GroupCache(source, client, clock=clock, front_ttl=0)
    redis_server.stop()
    assert cache.get("alice") == ALICE
    source.down = True
    with pytest.raises(GroupsUnavailable):
        cache.get("alice")
    client.close()


def test_encoding_is_compact_and_round_trips():
    from scitoken_issuer.services.group_cache import _Entry

    raw = encode_entry(_Entry(1.5, ALICE))
    assert raw == '[1.5,10001,10001,[7,[5000,"physics"],[10001,"alice"]]]'
    entry = decode_entry("alice", raw)
    assert entry.user == ALICE and entry.user.groups == ALICE.groups
    assert decode_entry("x", encode_entry(_Entry(2.0, None))) == (2.0, None)


def test_lifetimes():
    """GROUP_CACHE_TTL 0 means always live; the staleness bound is never below the TTL."""
    with pytest.raises(ValueError):
        GroupCache(FakeSource(), ttl=-1)
    assert GroupCache(FakeSource(), ttl=600, max_staleness=300).max_staleness == 600


def test_ttl_zero_always_looks_up_but_bridges_outages(backend, clock):
    source = FakeSource(ALICE)
    cache = make(source, backend, clock, ttl=0, max_staleness=60)
    cache.get("alice")
    cache.get("alice")
    assert source.lookups == ["alice", "alice"]
    source.down = True
    assert cache.get("alice") == ALICE


def test_ldap_outage_served_from_precomputed_cache(slapd, redis_url, clock):
    """docs/authorization.md end to end: precompute from slapd into Redis, stop slapd, serve within the bound."""
    source = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base, timeout=2)
    client = redis.Redis.from_url(redis_url)
    cache = GroupCache(source, client, ttl=300, max_staleness=900, clock=clock)
    assert cache.precompute().users == 5
    slapd.stop()
    clock.now += 600
    assert cache.get("carol").gids == {5000, 5002, 5003}
    clock.now += 400
    with pytest.raises(GroupsUnavailable):
        cache.get("carol")
    slapd.start()
    assert cache.get("carol").gids == {5000, 5002, 5003}
    source.close()
    client.close()


def test_concurrent_gets_look_up_consistently(backend, clock):
    source = FakeSource(ALICE, BOB)
    cache = make(source, backend, clock)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("bob"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [BOB] * 8
