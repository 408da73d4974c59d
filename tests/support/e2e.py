"""The whole issuer as an operator runs it, for end-to-end tests.

``issuer_stack(**settings)`` starts, on free loopback ports: a real upstream OIDC provider
(node ``oidc-provider``), a PostgreSQL database, Redis, slapd (users and groups), gunicorn
serving the issuer, and a Celery worker process. Every process is stopped afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import psycopg
import pytest
import redis
import requests

from .processes import ManagedProcess, free_port, port_open, wait_until

E2E_SECRET = "e2e-secret-key-0123456789abcdef-0123456789"
CLIENT_ID = "cli-tool"
CLIENT_SECRET = "cli-tool-secret-0123456789abcdef-0123456789"
PUBLIC_CLIENT_ID = "browser-app"
CLIENT_REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: tests read the Location header
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ACCOUNTS = [
    {"login": "alice", "password": "alice-idp-password", "sub": "idp-alice-1", "preferred_username": "alice",
     "name": "Alice Analyst", "email": "alice@example.org"},
    {"login": "bob", "password": "bob-idp-password", "sub": "idp-bob-2", "preferred_username": "bob"},
]


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not match:
        raise AssertionError(f"no CSRF token in page:\n{html[:2000]}")
    return match.group(1)


@dataclass
class Stack:
    url: str
    env: dict
    log_dir: Path
    idp: object
    web: ManagedProcess | None = None
    worker: ManagedProcess | None = None
    port: int = 0
    extra: dict = field(default_factory=dict)

    # -- processes ----------------------------------------------------------------------------
    def start_web(self) -> None:
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:scitoken_issuer.gunicorn_conf",  # as the Procfile
                "-b", f"127.0.0.1:{self.port}", "-w", "2", "--threads", "4", "--graceful-timeout", "3",
                "scitoken_issuer.wsgi:app"]
        self.web = ManagedProcess(f"web-{uuid.uuid4().hex[:6]}", argv, self.log_dir, env=self.env).start()
        self.web.wait_for_port(self.port, timeout=60)

    def kill_web(self) -> None:
        """Kill every web process at once (SIGKILL): nothing gets to clean up."""
        self.web.stop(sig=signal.SIGKILL)
        wait_until(lambda: not port_open(self.port), 30, "the killed web processes to release the port")

    def start_worker(self) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=threads",
                "--concurrency=4", "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.worker = ManagedProcess(f"worker-{uuid.uuid4().hex[:6]}", argv, self.log_dir, env=self.env).start()

        def ready() -> bool:
            if not self.worker.alive():
                raise RuntimeError(f"celery worker exited:\n{self.worker.log()}")
            return " ready." in self.worker.log()
        wait_until(ready, 60, "the celery worker")

    def stop(self) -> None:
        for proc in (self.web, self.worker):
            if proc is not None:
                proc.stop()

    # -- clients ------------------------------------------------------------------------------
    def http(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = "e2e-tests"
        return session

    def token(self, data: dict, client_id: str = CLIENT_ID, secret: str | None = CLIENT_SECRET) -> requests.Response:
        auth = (client_id, secret) if secret else None
        if secret is None:
            data = {**data, "client_id": client_id}
        return requests.post(f"{self.url}/auth/token", data=data, auth=auth, timeout=30)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "scitoken_issuer.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=120)


def _database(postgres_url: str) -> str:
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = postgres_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def issuer_stack(oidc_idp, postgres_url, redis_server, slapd, tmp_path) -> Iterator[Callable[..., Stack]]:
    """Factory ``issuer_stack(worker=True, **settings) -> Stack`` (see the module docstring)."""
    stacks: list[Stack] = []

    def start(worker: bool = True, **settings) -> Stack:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        idp = oidc_idp(clients=[{"client_id": "scitoken-issuer", "client_secret": "issuer-at-idp-secret-0123456789",
                                 "redirect_uris": [f"{url}/auth/callback"]}], accounts=ACCOUNTS)
        redis_db = len(stacks) + 1
        static_clients = [
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "client_name": "Command line tool",
             "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT],
             "redirect_uris": [CLIENT_REDIRECT]},
            {"client_id": PUBLIC_CLIENT_ID, "client_name": "Browser app", "token_endpoint_auth_method": "none",
             "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [CLIENT_REDIRECT]},
        ]
        import json
        env = {
            **os.environ,
            "ISSUER_ADDRESS": url, "SECRET_KEY": E2E_SECRET, "INSTANCE_PATH": str(tmp_path / f"instance{port}"),
            "DATABASE_URL": _database(postgres_url), "REDIS_URL": f"{redis_server.url.rsplit('/', 1)[0]}/{redis_db}",
            "IDP_ADDRESS": idp.issuer, "IDP_CLIENT_ID": "scitoken-issuer",
            "IDP_CLIENT_SECRET": "issuer-at-idp-secret-0123456789",
            "USE_LDAP": "true", "LDAP_URL": slapd.url, "LDAP_USER_BASE": slapd.user_base,
            "LDAP_GROUP_BASE": slapd.group_base, "STATIC_CLIENTS": json.dumps(static_clients),
            "DEVICE_POLL_INTERVAL": "1", "PYTHONUNBUFFERED": "1",
        }
        env.update({k: str(v) for k, v in settings.items()})
        # the session's redis-server is shared: start from an empty database, so that failure
        # counts (127.0.0.1) or state another test module left behind cannot throttle this stack
        with redis.Redis.from_url(env["REDIS_URL"]) as leftover:
            leftover.flushdb()
        stack = Stack(url=url, env=env, log_dir=tmp_path, idp=idp, port=port)
        stacks.append(stack)
        done = stack.cli("db", "upgrade")
        if done.returncode:
            raise RuntimeError(f"db upgrade failed:\n{done.stdout}{done.stderr}")
        if env.get("POSIX_PATH"):  # as an operator does at deployment (beat keeps it fresh after)
            done = stack.cli("scan-tree", "--store")
            if done.returncode:
                raise RuntimeError(f"scan-tree failed:\n{done.stdout}{done.stderr}")
        stack.start_web()
        if worker:
            stack.start_worker()
        return stack

    try:
        yield start
    finally:
        for stack in stacks:
            stack.stop()
