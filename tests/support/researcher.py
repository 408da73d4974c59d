"""A researcher on a login node running ``scitoken-token`` against a real issuer over HTTP, and the
person approving its device login in a browser (the real pages, driven with ``requests``).

Each :class:`Researcher` has its own ``XDG_CONFIG_HOME`` and bearer-token file, so tests never
share a token store; the CLI runs as a real process (``python -m scitoken_issuer.token_cli``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from .dev_login import DEV_PASSWORDS
from .e2e import csrf_token
from .processes import wait_until

ROOT = Path(__file__).resolve().parents[2]
USER_CODE = re.compile(r"enter the code\s+([A-Z]{5}-[A-Z]{5})")
#: Variables the CLI reads; never inherited from the machine running the tests.
CLI_VARIABLES = ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "SCITOKEN_ISSUER")


def approve_device(issuer: str, user_code: str, decision: str = "approve", user: str = "alice") -> str:
    """Open the verification page with the code, sign in, approve or deny: the final page's text."""
    http = requests.Session()
    page = http.get(f"{issuer}/auth/device", params={"user_code": user_code}, timeout=30)
    page = http.post(f"{issuer}/auth/login", timeout=30, data={
        "username": user, "password": DEV_PASSWORDS[user], "csrf_token": csrf_token(page.text),
        "next": f"/auth/device?user_code={user_code}"})
    assert 'name="decision" value="approve"' in page.text, page.text[:2000]
    done = http.post(f"{issuer}/auth/device", timeout=30, data={
        "user_code": user_code, "decision": decision, "csrf_token": csrf_token(page.text)})
    assert done.status_code == 200, done.text[:2000]
    return done.text


class Researcher:
    """``scitoken-token`` for one user account: config in ``home/config``, token in ``home/bt``."""

    def __init__(self, home: Path, issuer: str):
        self.home = home
        self.issuer = issuer
        self.runs = 0
        home.mkdir(parents=True, exist_ok=True)

    @property
    def store(self) -> Path:
        return self.home / "config" / "scitoken-token"

    @property
    def token_file(self) -> Path:
        return self.home / "bt"

    def env(self, **extra: str | None) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in CLI_VARIABLES}
        env.update(XDG_CONFIG_HOME=str(self.home / "config"), BEARER_TOKEN_FILE=str(self.token_file),
                   PYTHONPATH=str(ROOT), HOME=str(self.home))
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def argv(self, args: tuple[str, ...], issuer: bool) -> list[str]:
        argv = [sys.executable, "-m", "scitoken_issuer.token_cli", *args]
        return argv + ["--issuer", self.issuer] if issuer else argv

    def run(self, *args: str, issuer: bool = True, umask: int = 0o022, prefix: tuple[str, ...] = (),
            timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess:
        """One run that needs no one in a browser."""
        return subprocess.run([*prefix, *self.argv(args, issuer)], env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout, umask=umask)

    def login(self, *args: str, decision: str | None = "approve", user: str = "alice", umask: int = 0o022,
              timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess:
        """A run that shows a user code; someone approves (or denies, or, with ``decision=None``,
        never answers) in the browser."""
        self.runs += 1
        log = self.home / f"stderr-{self.runs}.txt"
        argv = self.argv(args, True)
        with open(log, "w") as err:
            proc = subprocess.Popen(argv, env=self.env(**env), stdout=subprocess.PIPE, stderr=err, text=True,
                                    umask=umask)
        try:
            def shown() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"scitoken-token exited {proc.returncode} before showing a code:\n"
                                         + log.read_text())
                return USER_CODE.search(log.read_text()) is not None
            wait_until(shown, 30, "scitoken-token to show a user code")
            if decision is not None:
                approve_device(self.issuer, USER_CODE.search(log.read_text()).group(1), decision, user)
            out, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(argv, proc.returncode, out, log.read_text())
