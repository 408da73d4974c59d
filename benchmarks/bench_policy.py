"""Warm ``ScopePolicy.grant_scopes`` time (SPEC §7): p50 / p99 in µs for realistic requests.

Wired as ``Runtime.build`` wires it for the web process without Redis: the group cache in process
and warm (precomputed), the strict-mode index in process (``TreeIndexStore``), a ``StatCache`` of
one second. Each call includes the group-cache look-up, scope parsing, the client policy and every
POSIX / strict-index check. Prints numbers only; the aim (issue 4) is p50 under 50 µs.

    python benchmarks/bench_policy.py [--calls 20000] [--dirs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from types import SimpleNamespace

from bench_decision import build, timed  # same directory: the tree of the decision benchmark

from scitoken_issuer.services.authorization import Grant, ScopePolicy
from scitoken_issuer.services.group_cache import GroupCache
from scitoken_issuer.services.groups import StaticGroupSource
from scitoken_issuer.services.posix import StatCache
from scitoken_issuer.services.scopes import parse_scopes
from scitoken_issuer.services.tree_store import TreeIndexStore


def write_users(path: str, count: int) -> None:
    """alice (uid 20001, group ana 21000 among 12 groups) plus ``count`` other users."""
    groups = [{"name": "ana", "gid": 21000}] + [{"name": f"exp{g}", "gid": 22000 + g} for g in range(11)]
    users = [{"name": "alice", "password_hash": "-", "uid": 20001, "gid": 20001, "groups": groups}]
    users += [{"name": f"u{i}", "password_hash": "-", "uid": 30000 + i, "gid": 30000 + i,
               "groups": [{"name": f"exp{i % 11}", "gid": 22000 + i % 11}]} for i in range(count)]
    with open(path, "w") as out:
        json.dump(users, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--dirs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as top, tempfile.TemporaryDirectory() as etc:
        build(top, args.dirs)
        users_file = os.path.join(etc, "users.json")
        write_users(users_file, 1000)
        groups = GroupCache(StaticGroupSource(users_file), None, ttl=300, max_staleness=3600)
        stats = groups.precompute()
        tree = TreeIndexStore(top)
        index = tree.rebuild()
        policy = ScopePolicy(top, True, index=tree.get, stat_cache=StatCache(ttl=1.0))
        print(f"tree: {index.directories} directories, {len(index)} boundaries"
              f"{'' if os.geteuid() == 0 else ' (not root: no chown, fewer boundaries)'}; "
              f"group cache: {stats.users} users precomputed")

        default_client = SimpleNamespace(client_id="portal", scope="")  # DEFAULT_USER_CLIENT_SCOPE
        registered = SimpleNamespace(client_id="rucio", scope="openid offline_access wlcg.groups:/ana "
                                     "storage.read:/data storage.create:/data/ana storage.modify:/data/ana")
        requests = {
            "read, depth 5 (+openid offline_access)": (
                "openid offline_access storage.read:/data/ana/run7/raw/day3", default_client),
            "read + create (path not yet created)": (
                "storage.read:/data/ana/run7 storage.create:/data/ana/new-run/out", default_client),
            "SciTokens write:/p (create + modify)": ("write:/data/ana/new-run", default_client),
            "wlcg.groups + read, registered policy": (
                "openid wlcg.groups storage.read:/data/ana/run9/raw", registered),
            "five storage scopes": (" ".join(f"storage.read:/data/ana/run{i}/raw/day{i % 5}" for i in range(1, 6)),
                                    default_client),
            "refused: other's home (step 2)": ("storage.read:/home/u3", default_client),
            "refused: create in a root-owned run (step 2)": ("storage.create:/data/ana/run7/raw", default_client),
            "refused: strict, private corner below (step 4)": ("storage.read:/data/ana", default_client),
            "refused: outside client policy": ("storage.stage:/data/ana/run7", registered),
        }
        cases = {}
        for name, (scope, client) in requests.items():
            outcome = policy.grant_scopes(groups.get("alice"), scope, client)
            label = f"{name} [{'grant' if isinstance(outcome, Grant) else 'refusal'}]"
            cases[label] = (lambda s=scope, c=client: policy.grant_scopes(groups.get("alice"), s, c))
        parsed = parse_scopes("openid offline_access storage.read:/data/ana/run7/raw/day3")
        cases["read, depth 5, scopes pre-parsed"] = lambda: policy.grant_scopes(groups.get("alice"), parsed,
                                                                                 default_client)
        cases["group cache get only (warm)"] = lambda: groups.get("alice")
        width = max(map(len, cases))
        print(f"{'request through ScopePolicy.grant_scopes':<{width}}  {'p50 µs':>8}  {'p99 µs':>8}"
              f"   ({args.calls} warm calls each)")
        started = time.perf_counter()
        for name, fn in cases.items():
            p50, p99 = timed(fn, args.calls)
            print(f"{name:<{width}}  {p50:8.1f}  {p99:8.1f}")
        print(f"(total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
