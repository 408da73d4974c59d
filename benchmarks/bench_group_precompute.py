"""Benchmark: precompute 100,000 users in 20,000 groups from a real slapd into a real Redis (SPEC §7).

Prints the slapadd load time, precompute seconds, users/s, Redis memory used by the cache, and
warm ``GroupCache.get`` latency (p50/p99, µs). Numbers only; nothing is asserted.

    python benchmarks/bench_group_precompute.py [--users 100000] [--groups 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scitoken_issuer.services.group_cache import GroupCache  # noqa: E402
from scitoken_issuer.services.ldap_groups import LdapGroupSource  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.slapd import Slapd, write_bulk_ldif  # noqa: E402


def percentile(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


def warm_get_latency(cache: GroupCache, names: list[str], rounds: int) -> tuple[float, float]:
    for name in names:  # warm the front cache
        cache.get(name)
    samples = []
    for _ in range(rounds):
        for name in names:
            t0 = time.perf_counter_ns()
            cache.get(name)
            samples.append((time.perf_counter_ns() - t0) / 1000)
    return percentile(samples, 0.50), percentile(samples, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=20_000)
    parser.add_argument("--groups-per-user", type=int, default=7)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-groups-"))
    slapd, redis_server = Slapd(root / "slapd"), RedisServer(root / "redis")
    (root / "redis").mkdir()
    try:
        t0 = time.perf_counter()
        ldif = write_bulk_ldif(root / "bulk.ldif", args.users, args.groups,
                               groups_per_user=args.groups_per_user)
        t1 = time.perf_counter()
        slapd.configure()
        slapd.load(ldif)
        slapd.start()
        t2 = time.perf_counter()
        print(f"LDIF generated: {t1 - t0:.1f} s ({ldif.stat().st_size / 1e6:.0f} MB); "
              f"slapadd + start: {t2 - t1:.1f} s")

        redis_server.start()
        client = redis.Redis.from_url(redis_server.url)
        before = client.info("memory")["used_memory"]
        source = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base, timeout=30)
        cache = GroupCache(source, client)
        stats = cache.precompute()
        after = client.info("memory")["used_memory"]
        print(f"precompute: {stats.users} users, {stats.groups} distinct gids (incl. primary) in {stats.seconds:.1f} s "
              f"({stats.users / stats.seconds:,.0f} users/s)")
        print(f"Redis used_memory delta: {(after - before) / 2**20:.1f} MiB "
              f"({(after - before) / max(stats.users, 1):.0f} B/user)")

        names = [f"user{i:06d}" for i in range(0, args.users, max(1, args.users // 1000))]
        p50, p99 = warm_get_latency(cache, names, rounds=20)
        print(f"warm GroupCache.get (front cache): p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        no_front = GroupCache(source, client, front_ttl=0)
        p50, p99 = warm_get_latency(no_front, names, rounds=5)
        print(f"warm GroupCache.get (Redis GET + decode): p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        in_process = GroupCache(source)
        in_process.precompute()
        p50, p99 = warm_get_latency(in_process, names, rounds=20)
        print(f"warm GroupCache.get (in-process store): p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        source.close()
        client.close()
    finally:
        slapd.destroy()
        redis_server.destroy()


if __name__ == "__main__":
    main()
