"""A real command-line client, ``oidc-agent``, against the embedded issuer (docs/flows.md, flow 2).

oidc-gen registers itself dynamically (RFC 7591) or uses an administrator's client, runs the
device flow (RFC 8628) while a person approves in the browser (here: the development login,
scripted), then ``oidc-token`` gets fresh access tokens through the refresh grant.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest
import requests

from .support.e2e import csrf_token
from .support.processes import ManagedProcess, free_port, wait_until

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("oidc-gen") is None, reason="oidc-agent-cli is not installed")]


@pytest.fixture
def embedded(tmp_path):
    """``python -m scitoken_issuer`` on a free port: SQLite, tasks in process, development login."""
    port = free_port()
    env = {**os.environ, "INSTANCE_PATH": str(tmp_path / "instance"), "PORT": str(port),
           "DEVICE_POLL_INTERVAL": "1"}
    server = ManagedProcess("embedded", [sys.executable, "-m", "scitoken_issuer"], tmp_path, env=env).start()
    try:
        server.wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}", env
    finally:
        server.stop(signal.SIGINT)


@pytest.fixture
def agent(tmp_path):
    """An ``oidc-agent`` with its own HOME; yields the environment the oidc-* tools need."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    started = subprocess.run(["oidc-agent", "--json"], env=env, capture_output=True, text=True, timeout=30)
    info = json.loads(started.stdout)
    env.update(OIDC_SOCK=info["socket"], OIDCD_PID=str(info["dpid"]))
    try:
        yield env
    finally:
        subprocess.run(["oidc-agent", "--kill"], env=env, capture_output=True, timeout=30)


def approve_as_alice(issuer: str, user_code: str) -> None:
    """What the person does in a browser: enter the code, sign in, approve."""
    http = requests.Session()
    page = http.get(f"{issuer}/auth/device", params={"user_code": user_code})
    page = http.post(f"{issuer}/auth/login", data={"username": "alice", "password": "alice-dev-password",
                                                   "csrf_token": csrf_token(page.text),
                                                   "next": f"/auth/device?user_code={user_code}"})
    assert "Approve" in page.text, page.text[:1000]
    done = http.post(f"{issuer}/auth/device", data={"user_code": user_code, "decision": "approve",
                                                    "csrf_token": csrf_token(page.text)})
    assert done.status_code == 200 and "You approved" in done.text


def run_oidc_gen(issuer: str, env: dict, account: str, log: Path, *extra: str) -> None:
    argv = ["oidc-gen", "--flow=device", f"--issuer={issuer}", "--scope=openid offline_access wlcg.groups",
            "--pw-cmd=echo test-encryption-password", "--prompt=none", "--confirm-default", *extra, account]
    with open(log, "w") as out:
        gen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: re.search(r"enter the code: ([A-Z-]{11})", log.read_text()) is not None, 30,
                   "oidc-gen to show the user code")
        approve_as_alice(issuer, re.search(r"enter the code: ([A-Z-]{11})", log.read_text()).group(1))
        assert gen.wait(60) == 0, log.read_text()[-2000:]
    finally:
        if gen.poll() is None:
            os.killpg(gen.pid, signal.SIGKILL)
            gen.wait()


def token_claims(env: dict, account: str) -> dict:
    out = subprocess.run(["oidc-token", account], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return pyjwt.decode(out.stdout.strip(), options={"verify_signature": False})


def test_oidc_agent_registers_itself_and_gets_tokens(embedded, agent, tmp_path):
    """RFC 7591 dynamic registration by a real client, then RFC 8628 and refresh."""
    issuer, _env = embedded
    run_oidc_gen(issuer, agent, "dynamic", tmp_path / "gen.log")
    claims = token_claims(agent, "dynamic")
    assert claims["iss"] == issuer and claims["sub"] == "alice"
    assert set(claims["wlcg.groups"]) == {"/alice", "/atlas", "/physics"}
    # a second token comes from the refresh grant, with rotation (the agent keeps the new one)
    second = token_claims(agent, "dynamic")
    assert second["jti"]


def test_oidc_agent_with_an_administrator_client(embedded, agent, tmp_path):
    """docs/flows.md: an operator registers the client with the CLI; oidc-agent uses it (--manual)."""
    issuer, env = embedded
    added = subprocess.run([sys.executable, "-m", "scitoken_issuer.cli", "client", "add", "--name", "agent",
                            "--grant", "urn:ietf:params:oauth:grant-type:device_code", "--grant", "refresh_token",
                            "--scope", "openid offline_access wlcg.groups"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    client = json.loads(added.stdout)
    run_oidc_gen(issuer, agent, "manual", tmp_path / "gen.log", "--manual", f"--client-id={client['client_id']}",
                 f"--client-secret={client['client_secret']}")
    claims = token_claims(agent, "manual")
    assert claims["client_id"] == client["client_id"] and claims["sub"] == "alice"
