"""Warm POSIX decision time (SPEC §7): p50 / p99 in µs for check_access and the strict index query.

Builds a tree in a temporary directory (owners and modes set when run as root), scans it, then
times many warm calls. Prints numbers only; the aim (issue 4) is a warm decision p50 under 50 µs.

    python benchmarks/bench_decision.py [--calls 20000] [--dirs 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from scitoken_issuer.services.posix import StatCache, check_access
from scitoken_issuer.services.tree_index import Boundary, TreeIndex, scan_tree
from scitoken_issuer.services.users import PosixUser

ALICE = PosixUser("alice", 20001, 20001, frozenset({20001, 21000}))


def build(top: str, dirs: int) -> None:
    """/data/ana/run{i}/raw/day{j} … plus per-user homes: a few thousand directories, some boundaries."""
    as_root = os.geteuid() == 0
    os.chmod(top, 0o755)
    os.makedirs(f"{top}/data/ana", exist_ok=True)
    if as_root:
        os.chown(f"{top}/data/ana", 0, 21000)
    os.chmod(f"{top}/data/ana", 0o775)
    for i in range(dirs // 10):
        for j in range(5):
            os.makedirs(f"{top}/data/ana/run{i}/raw/day{j}", exist_ok=True)
        if i % 50 == 0 and as_root:  # a private corner now and then: a strict-mode boundary
            os.chown(f"{top}/data/ana/run{i}/raw", 20002, 20002)
            os.chmod(f"{top}/data/ana/run{i}/raw", 0o700)
    for u in range(dirs // 2):
        home = f"{top}/home/u{u}"
        os.makedirs(home, exist_ok=True)
        if as_root:
            os.chown(home, 30000 + u, 30000 + u)
        os.chmod(home, 0o700)


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    for _ in range(min(1000, calls)):
        fn()  # warm caches (page cache, dentries, StatCache, lru caches)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--dirs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as top:
        build(top, args.dirs)
        t0 = time.perf_counter()
        index = scan_tree(top)
        scan_s = time.perf_counter() - t0
        print(f"tree: {index.directories} directories, {len(index)} boundaries, scanned in {scan_s * 1000:.1f} ms"
              f"{'' if os.geteuid() == 0 else ' (not root: no chown, fewer boundaries)'}")
        cache = StatCache(ttl=5.0)
        deep = "/data/ana/run7/raw/day3"
        cases = {
            "check_access read (depth 5)": lambda: check_access(top, ALICE, "read", deep),
            "check_access create, missing path": lambda: check_access(top, ALICE, "create", deep + "/new/file"),
            "check_access refused (other's home)": lambda: check_access(top, ALICE, "read", "/home/u3"),
            "check_access read + StatCache": lambda: check_access(top, ALICE, "read", deep, stat_cache=cache),
            "check_access read + strict index": lambda: check_access(top, ALICE, "read", deep, index=index),
            "check_access read + StatCache + strict": lambda: check_access(
                top, ALICE, "read", deep, index=index, stat_cache=cache),
            "first_denial /data/ana/run7": lambda: index.first_denial("/data/ana/run7", ALICE, "read"),
            "first_denial /data/ana (many below)": lambda: index.first_denial("/data/ana", ALICE, "read"),
            "first_denial / (whole tree)": lambda: index.first_denial("/", ALICE, "read"),
        }
        rng = random.Random(1)
        big = TreeIndex("/srv", [Boundary("/", "directory", 0, 0, 0o755)] + [
            Boundary(f"/home/g{g}/u{u}", "directory", 30000 + u, 40000 + g, rng.choice([0o700, 0o750, 0o755]))
            for g in range(100) for u in range(1000)])
        cases["synthetic 100k boundaries: first_denial /home/g5"] = lambda: big.first_denial("/home/g5", ALICE, "read")
        cases["synthetic 100k boundaries: first_denial /"] = lambda: big.first_denial("/", ALICE, "read")
        # Worst case: every boundary below is a candidate (group-only access) yet none denies alice.
        shared = TreeIndex("/srv", [Boundary("/", "directory", 0, 0, 0o755)] + [
            Boundary(f"/proj/p{i}", "directory", 30000 + i, 21000, 0o770) for i in range(10000)])
        cases["synthetic 10k group dirs, none denies: /proj"] = lambda: shared.first_denial("/proj", ALICE, "read")
        width = max(map(len, cases))
        print(f"{'case':<{width}}  {'p50 µs':>8}  {'p99 µs':>8}   ({args.calls} warm calls each)")
        for name, fn in cases.items():
            p50, p99 = timed(fn, args.calls)
            print(f"{name:<{width}}  {p50:8.1f}  {p99:8.1f}")


if __name__ == "__main__":
    main()
