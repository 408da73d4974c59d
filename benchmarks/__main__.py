"""``python -m benchmarks``: the issuer over HTTP under bounded load, beside its floors and a peer.

Starts everything it measures on free loopback ports, drives each with ``wrk`` (32 connections,
fixed duration), prints one table and stops every process it started. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import floors, load
from .inputs import Prepared, basic_auth, prepare
from .report import Row, render
from .scenarios import BY_NAME, CLIENT_CREDENTIALS_BODY, FLOOR_LOADS, SCENARIOS
from .servers import NodePeer, WebServer, clean_environment, storage_tree

CONFIGS = ("sqlite", "postgres+redis")
BENCH_SECRET = "benchmark-secret-key-0123456789abcdef-0123"


@dataclass
class Options:
    duration: float
    key_type: str
    connections: int
    configs: list[str]
    scenarios: list[str]
    max_rate: int
    peer: bool
    rate_limits: bool
    profile: Path | None
    log_dir: Path


def parse(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario (default 10)")
    parser.add_argument("--key-type", choices=("RS256", "ES256"), default="RS256", help="KEY_TYPE (default RS256)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--config", action="append", choices=CONFIGS, dest="configs",
                        help="issuer configuration (repeat; default both)")
    parser.add_argument("--scenario", action="append", choices=sorted(BY_NAME), dest="scenarios",
                        help="scenario (repeat; default all)")
    parser.add_argument("--max-rate", type=int, default=1500,
                        help="requests/s the inputs are sized for (refresh tokens, codes; default 1500)")
    parser.add_argument("--no-peer", action="store_false", dest="peer", help="skip the oidc-provider peer")
    parser.add_argument("--rate-limits", action="store_true",
                        help="keep the per-address flood limits (all load comes from 127.0.0.1)")
    parser.add_argument("--profile", type=Path, help="record each issuer scenario with py-spy into this folder")
    parser.add_argument("--json", type=Path, dest="json_out", help="also write the rows as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--log-dir", type=Path, help="keep server logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    options = Options(args.duration, args.key_type, args.connections, args.configs or list(CONFIGS),
                      args.scenarios or [s.name for s in SCENARIOS], args.max_rate, args.peer, args.rate_limits,
                      args.profile, args.log_dir or Path(tempfile.mkdtemp(prefix="bench-logs-")))
    options.log_dir.mkdir(parents=True, exist_ok=True)
    return options, args


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(server: WebServer | NodePeer, what: load.Load, options: Options) -> tuple[load.Result, float]:
    """The load's result and the CPU time the server spent meanwhile (its workers, or the peer)."""
    before = server.cpu_seconds()
    result = load.run(server.url, what, options.duration, options.connections)
    spent = server.cpu_seconds() - before
    if result.failures:
        progress(f"    {result.failures} errors ({result.throttled} × 429), first: {result.first_error}")
    return result, spent


def warm_up(url: str, *loads: load.Load) -> None:
    """Until every worker has loaded the app and answers briskly (gunicorn opens the port first)."""
    for what in loads:
        for _ in range(15):
            result = load.run(url, what, 2, 8)
            if result.requests > 50 and result.p99_ms < 500:
                break


class References:
    """The floors L2/L3 and the peer, kept running; each is measured right before the issuer
    scenario it is compared with, so a busy moment of a shared machine hits both alike."""

    NAMES = {"L2": "L2 bare Flask, one fresh JWT", "L3": "L3 bare Flask JSON"}

    def __init__(self, options: Options, stack: contextlib.ExitStack):
        self.options = options
        self.samples: dict[str, list[Row]] = {"L2": [], "L3": [], "peer": []}
        self.servers = {}
        for floor, target in (("L2", "benchmarks.floors:jwt_app()"), ("L3", "benchmarks.floors:json_app()")):
            server = WebServer(f"floor-{floor}", target, clean_environment(KEY_TYPE=options.key_type),
                               options.log_dir).start()
            stack.callback(server.stop)
            warm_up(server.url, FLOOR_LOADS[floor])
            self.servers[floor] = server
        self.peer = self.peer_load = None
        if options.peer:
            client_id, secret = "bench-peer", secrets.token_urlsafe(32)
            self.peer = NodePeer(options.key_type, client_id, secret, options.log_dir).start()
            stack.callback(self.peer.stop)
            self.peer_load = load.Load("/token", "POST", CLIENT_CREDENTIALS_BODY, auth=basic_auth(client_id, secret))
            warm_up(self.peer.url, self.peer_load)

    def floor(self, name: str) -> float:
        server = self.servers[name]
        result, cpu = measure(server, FLOOR_LOADS[name], self.options)
        self.samples[name].append(Row.from_result(self.NAMES[name], "gunicorn", result, server.worker_rss_mb(), cpu))
        return result.rate

    def peer_rate(self) -> float | None:
        if self.peer is None:
            return None
        result, cpu = measure(self.peer, self.peer_load, self.options)
        self.samples["peer"].append(Row.from_result("peer oidc-provider client_credentials", "node, 1 process",
                                                    result, self.peer.rss_mb(), cpu))
        return result.rate

    def summary(self) -> list[Row]:
        """L1, then the mean of every L2, L3 and peer measurement."""
        rows = [Row(f"L1 {self.options.key_type} signatures × {floors.cores()} cores", "in process",
                    floors.signatures_per_second(self.options.key_type) * floors.cores())]
        for samples in self.samples.values():
            if samples:
                rows.append(Row.mean(samples, f"mean of {len(samples)}"))
        return rows


def protocol_floor(prepared: Prepared, options: Options, stack: contextlib.ExitStack) -> WebServer:
    """P (``floors.protocol_app``) with the clients the issuer's scenarios authenticate as."""
    pairs = ",".join(base64.b64decode(auth.split()[1]).decode() for auth in (prepared.service_auth, prepared.user_auth))
    server = WebServer("floor-P", "benchmarks.floors:protocol_app()",
                       clean_environment(KEY_TYPE=options.key_type, FLOOR_CLIENTS=pairs), options.log_dir).start()
    stack.callback(server.stop)
    warm_up(server.url, *(scenario.load(prepared) for scenario in SCENARIOS if scenario.protocol))
    return server


def issuer_settings(config: str, options: Options, folder: Path, stack: contextlib.ExitStack) -> dict:
    settings = {"SECRET_KEY": BENCH_SECRET, "KEY_TYPE": options.key_type, "AUTH_CODE_LIFETIME": "600",
                "POSIX_PATH": str(storage_tree()), "INSTANCE_PATH": str(folder / "instance")}
    if config == "postgres+redis":
        from tests.support.postgres import PostgresServer, postgres_bin
        from tests.support.redis_server import RedisServer
        bindir = postgres_bin()
        if bindir is None:
            raise SystemExit("PostgreSQL is not installed (initdb, postgres); run with --config sqlite")
        postgres = PostgresServer(bindir)
        stack.callback(postgres.destroy)
        redis = RedisServer()
        stack.callback(redis.destroy)
        settings["DATABASE_URL"] = postgres.start().url
        settings["REDIS_URL"] = redis.start().url
    return settings


def run_issuer(config: str, options: Options, stack: contextlib.ExitStack, references: References) -> list[Row]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{config.replace('+', '-')}-"))
    settings = issuer_settings(config, options, folder, stack)
    env = clean_environment(**settings, BENCH_RATE_LIMITS="on" if options.rate_limits else "off")
    server = WebServer(f"issuer-{config.replace('+', '-')}", "benchmarks.serve:app", env, options.log_dir)
    settings["ISSUER_ADDRESS"] = server.url
    env["ISSUER_ADDRESS"] = server.url
    server.process.env.update(env)
    sized = max(200, int(options.duration * options.max_rate))
    progress(f"  {config}: preparing inputs ({sized} refresh tokens, {sized} codes) ...")
    prepared = prepare(settings, folder, {"refresh": sized, "code": sized, "device": 5 * options.max_rate,
                                          "access": 500})
    server.start()
    stack.callback(server.stop)
    warm_up(server.url, BY_NAME["client_credentials"].load(prepared), BY_NAME["discovery"].load(prepared))
    protocol = None
    if any(BY_NAME[name].protocol for name in options.scenarios):
        protocol = protocol_floor(prepared, options, stack)
    rows = []
    for name in options.scenarios:
        scenario = BY_NAME[name]
        progress(f"  {config}: {name} (after {scenario.floor}{' and the peer' if name == 'client_credentials' else ''}) ...")
        floor_rate = references.floor(scenario.floor)
        peer_rate = references.peer_rate() if name == "client_credentials" else None
        if scenario.protocol:
            result, cpu = measure(protocol, scenario.load(prepared), options)
            rows.append(Row.from_result(f"P authlib alone: {name}", "gunicorn, in memory", result,
                                        protocol.worker_rss_mb(), cpu, floor=scenario.floor, floor_rate=floor_rate))
        with profiling(options, server, f"{config}-{name}"):
            result, cpu = measure(server, scenario.load(prepared), options)
        if scenario.consumes and result.wrapped:
            progress(f"    inputs ran out ({result.wrapped} wraps): raise --max-rate")
        rows.append(Row.from_result(name, config, result, server.worker_rss_mb(), cpu, floor=scenario.floor,
                                    floor_rate=floor_rate, peer_rate=peer_rate))
    server.stop()
    if protocol is not None:
        protocol.stop()
    return rows


@contextlib.contextmanager
def profiling(options: Options, server: WebServer, name: str):
    """py-spy over every gunicorn worker while the scenario runs (collapsed stacks)."""
    if options.profile is None:
        yield
        return
    import subprocess
    options.profile.mkdir(parents=True, exist_ok=True)
    argv = ["py-spy", "record", "--subprocesses", "--nonblocking", "--gil", "--rate", "200", "--format", "raw",
            "--duration", str(max(1, round(options.duration))), "--pid", str(server.process.proc.pid),
            "--output", str(options.profile / f"{name.replace('+', '-')}.txt")]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def main(argv: list[str] | None = None) -> int:
    options, args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    load.wrk_path()
    progress(f"benchmark: {options.duration:g} s per scenario, {options.connections} connections, "
             f"{options.key_type}; logs in {options.log_dir}")
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        references = References(options, stack)
        for config in options.configs:
            rows += run_issuer(config, options, stack, references)
        summary = references.summary()
    print(render(summary, rows, markdown=args.markdown))
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "options": {k: str(v) for k, v in asdict(options).items()},
            "references": [asdict(row) for row in summary],
            "samples": {k: [asdict(row) for row in v] for k, v in references.samples.items()},
            "rows": [asdict(row) for row in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
