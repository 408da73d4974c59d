"""``scitoken-token`` against a running issuer over real HTTP (docs/researchers.md).

The issuer is the embedded default (``python -m scitoken_issuer``: gunicorn, SQLite, the
development login) with a small storage tree; the CLI runs as a real process and a person's
browser steps go through the real verification, sign-in and consent pages (RFC 8628 §3.3).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from scitoken_issuer.token_cli.bearer import decode
from scitoken_issuer.token_cli.errors import (EXIT_DENIED, EXIT_EXPIRED, EXIT_INVALID_SCOPE, EXIT_LOCAL_FILE,
                                              EXIT_LOGIN_NEEDED, EXIT_UNREACHABLE, EXIT_USAGE)
from scitoken_issuer.token_cli.store import TokenStore, record_key

from .support.processes import free_port, wait_until
from .support.researcher import ROOT, USER_CODE, Researcher, approve_device
from .test_embedded import Embedded

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")]

SCOPE = "storage.read:/public wlcg.groups"
PHYSICS = 5000  # alice's group in config/dev-users.json


def build_tree(base: Path) -> str:
    root = base / "storage"
    for rel, (uid, gid, mode) in {"": (0, 0, 0o755), "public": (0, 0, 0o755), "data": (0, 0, 0o755),
                                  "data/physics": (0, PHYSICS, 0o2775), "data/private": (0, 0, 0o700)}.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    (root / "public" / "README").write_text("open data\n")
    return str(root)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    base = tmp_path_factory.mktemp("issuer")
    server = Embedded(base, "embedded", POSIX_PATH=build_tree(base), DEVICE_POLL_INTERVAL="1").start()
    yield server
    server.process.stop()


@pytest.fixture
def researcher(issuer, tmp_path) -> Researcher:
    return Researcher(tmp_path / "alice", issuer.url)


def record(researcher: Researcher, scope: str = SCOPE, audience: str | None = None):
    scopes = ["openid", "offline_access", *scope.split()]
    return TokenStore(researcher.store).record(record_key(researcher.issuer, scopes, audience))


def claims(token_file: Path) -> dict:
    return decode(token_file.read_text().strip())[1]


def token_requests(issuer: Embedded) -> int:
    return issuer.output().count('"POST /auth/token ')


def test_first_login_writes_a_private_token(researcher, issuer):
    """RFC 8628 §3.2–3.5 and WLCG Bearer Token Discovery: the code is shown, a person approves in the
    browser, the access token lands in $BEARER_TOKEN_FILE (0600 even with umask 0), the refresh
    token only in the 0600 store under a 0700 directory; nothing secret on stdout."""
    done = researcher.login("get", "--scope", SCOPE, umask=0)
    assert done.returncode == 0, done.stderr
    assert f"To sign in, open  {issuer.url}/auth/device" in done.stderr and USER_CODE.search(done.stderr)
    assert f"access token in {researcher.token_file}" in done.stderr
    assert done.stdout == ""
    token = researcher.token_file.read_text()
    assert token.endswith("\n") and token.count(".") == 2
    got = claims(researcher.token_file)
    assert got["sub"] == "alice" and got["iss"] == issuer.url
    assert set(got["scope"].split()) == {"openid", "offline_access", "storage.read:/public", "wlcg.groups"}
    kept = record(researcher)
    assert kept.access_token == token.strip() and kept.refresh_token
    assert kept.refresh_token not in token
    assert stat.S_IMODE(researcher.token_file.stat().st_mode) == 0o600
    for directory in (researcher.store, researcher.store / "tokens", researcher.store / "clients"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in [*researcher.store.glob("*/*.json")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_renews_silently_with_the_refresh_token(researcher, issuer):
    """RFC 6749 §6: the second run renews with the refresh token (no device flow, no person), stores
    the rotated refresh token and writes the new access token."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    first, first_record = claims(researcher.token_file), record(researcher)
    done = researcher.run("get", "--scope", SCOPE, "--minsecs", "4000", "--no-device")
    assert done.returncode == 0, done.stderr
    assert "enter the code" not in done.stderr and "renewed with the refresh token" in done.stderr
    assert claims(researcher.token_file)["jti"] != first["jti"]
    assert record(researcher).refresh_token != first_record.refresh_token  # rotated and kept


def test_show_into_a_reader_that_left(researcher, issuer):
    """``scitoken-token --show | head -1`` printed a BrokenPipeError traceback: a reader of stdout
    that leaves early is not a failure (the token is written before it is shown): exit 0, quiet."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the claims are printed
    try:
        done = subprocess.run(researcher.argv(("get", "--scope", SCOPE, "--show"), True), env=researcher.env(),
                              stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0 and "still valid, not renewed" in done.stderr


def test_minsecs_renews_only_when_needed(researcher, issuer):
    """htgettoken's --minsecs: a token with more than minsecs left is kept (no request to the token
    endpoint, same file, same inode); fewer than minsecs left renews it."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    jti, inode, before = claims(researcher.token_file)["jti"], researcher.token_file.stat().st_ino, \
        token_requests(issuer)
    for args in ((), ("--minsecs", "3000")):  # the token lives 3600 s
        done = researcher.run("get", "--scope", SCOPE, *args)
        assert done.returncode == 0 and "still valid, not renewed" in done.stderr, done.stderr
    assert token_requests(issuer) == before
    assert claims(researcher.token_file)["jti"] == jti and researcher.token_file.stat().st_ino == inode
    done = researcher.run("get", "--scope", SCOPE, "--minsecs", "3700")
    assert done.returncode == 0 and "renewed" in done.stderr
    assert token_requests(issuer) == before + 1 and claims(researcher.token_file)["jti"] != jti


def test_token_file_path_follows_bearer_token_discovery(researcher, tmp_path):
    """WLCG Bearer Token Discovery: $BEARER_TOKEN_FILE, else $XDG_RUNTIME_DIR/bt_u<uid>, else
    /tmp/bt_u<uid> (here a private /tmp: a bind mount in a mount namespace)."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    token = researcher.token_file.read_text()
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    done = researcher.run("get", "--scope", SCOPE, BEARER_TOKEN_FILE=None, XDG_RUNTIME_DIR=str(runtime_dir))
    assert done.returncode == 0, done.stderr
    assert (runtime_dir / f"bt_u{os.getuid()}").read_text() == token
    done = researcher.run("get", "--scope", SCOPE, BEARER_TOKEN="stale")  # read first by every client
    assert "warning: BEARER_TOKEN is set in your environment" in done.stderr
    fake_tmp = tmp_path / "tmp"
    fake_tmp.mkdir(mode=0o1777)
    done = researcher.run("get", "--scope", SCOPE, BEARER_TOKEN_FILE=None,
                          prefix=private_tmp(fake_tmp, researcher.home))
    assert done.returncode == 0, done.stderr
    assert f"access token in /tmp/bt_u{os.getuid()}" in done.stderr
    assert (fake_tmp / f"bt_u{os.getuid()}").read_text() == token


def private_tmp(directory: Path, keep: Path) -> tuple[str, ...]:
    """Run a command with ``directory`` mounted on /tmp, seen by that command only. ``keep`` (the
    researcher's home, itself under /tmp), the source tree and Python's prefix stay reachable at
    their own paths when they lie under /tmp (a checkout in /tmp, a virtual environment there)."""
    paths = dict.fromkeys(str(p) for p in (keep, ROOT, Path(sys.prefix).resolve())
                          if str(p).startswith("/tmp/"))
    script = ('mount --make-rprivate / && d="$0" && '
              'while [ "$1" != -- ]; do mkdir -p "$d${1#/tmp}" && mount --bind "$1" "$d${1#/tmp}" && shift; done && '
              'shift && mount --rbind "$d" /tmp && exec "$@"')
    return ("unshare", "-m", "sh", "-c", script, str(directory), *paths, "--")


def test_token_file_in_tmp_is_never_written_through_a_planted_entry(researcher, tmp_path):
    """docs/researchers.md: in /tmp anyone may plant /tmp/bt_u<uid> first; a symbolic link or another
    user's file there is refused with a reason (exit 8), never followed or replaced."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    fake_tmp = tmp_path / "tmp"
    fake_tmp.mkdir(mode=0o1777)
    target, bait = fake_tmp / f"bt_u{os.getuid()}", tmp_path / "attacker-reads-this"
    target.symlink_to(bait)
    done = researcher.run("get", "--scope", SCOPE, BEARER_TOKEN_FILE=None,
                          prefix=private_tmp(fake_tmp, researcher.home))
    assert done.returncode == EXIT_LOCAL_FILE and "is a symbolic link; refusing" in done.stderr, done.stderr
    assert not bait.exists()
    target.unlink()
    target.write_text("someone else's\n")
    os.chown(target, 65534, 65534)
    done = researcher.run("get", "--scope", SCOPE, BEARER_TOKEN_FILE=None,
                          prefix=private_tmp(fake_tmp, researcher.home))
    assert done.returncode == EXIT_LOCAL_FILE and "belongs to uid 65534, not you" in done.stderr, done.stderr
    assert target.read_text() == "someone else's\n"
    assert len(done.stderr.strip().splitlines()) == 1


def test_token_file_is_replaced_atomically(researcher):
    """docs/researchers.md: each renewal writes a new file and renames it over the old one (the inode
    changes); a reader polling the file meanwhile always sees one whole token, never a partial one."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    seen, bad, stop = [], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            text = researcher.token_file.read_text()
            seen.append(text)
            if not text.endswith("\n") or decode(text.strip()) is None:
                bad.append(text)

    thread = threading.Thread(target=reader)
    thread.start()
    inodes = [researcher.token_file.stat().st_ino]
    try:
        for _ in range(3):
            done = researcher.run("get", "--scope", SCOPE, "--minsecs", "4000", umask=0)
            assert done.returncode == 0, done.stderr
            inodes.append(researcher.token_file.stat().st_ino)
            assert stat.S_IMODE(researcher.token_file.stat().st_mode) == 0o600
    finally:
        stop.set()
        thread.join()
    assert all(a != b for a, b in zip(inodes, inodes[1:]))  # a new file each time (the filesystem may reuse inodes)
    assert not bad and len(seen) > 10
    assert not [p for p in researcher.home.iterdir() if p.name.startswith(".bt.")]  # no temporary left


def test_renewals_of_one_record_are_serialised(researcher):
    """docs/researchers.md: a renewal waits for the record's lock, so jobs renewing at once rotate
    the refresh token one after the other, each from the token the previous one stored (two jobs
    presenting one rotating refresh token could otherwise keep a successor the issuer dropped)."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    key = record_key(researcher.issuer, ["openid", "offline_access", *SCOPE.split()], None)
    lock = researcher.store / "tokens" / f"{key}.lock"
    argv = researcher.argv(("get", "--scope", SCOPE, "--minsecs", "4000", "--no-device"), True)
    before = researcher.token_file.read_text()
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another job is renewing
        waiting = subprocess.Popen(argv, env=researcher.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=2)
        assert researcher.token_file.read_text() == before
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and "renewed" in err, err
    jobs = [subprocess.Popen(argv, env=researcher.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    results = [job.communicate(timeout=60) and job.returncode for job in jobs]
    assert results == [0] * 4
    done = researcher.run("get", "--scope", SCOPE, "--minsecs", "4000", "--no-device")
    assert done.returncode == 0, done.stderr


def test_denied_in_the_browser(researcher):
    """RFC 8628 §3.5 ``access_denied``: one line and exit 4; nothing written."""
    done = researcher.login("get", "--scope", SCOPE, decision="deny")
    assert done.returncode == EXIT_DENIED
    assert done.stderr.strip().splitlines()[-1].startswith("scitoken-token: the request was denied in the browser")
    assert not researcher.token_file.exists() and record(researcher) is None


def test_expired_code(tmp_path):
    """RFC 8628 §3.5 ``expired_token``: nobody approves within DEVICE_CODE_LIFETIME; one line, exit 5."""
    base = tmp_path / "short"
    base.mkdir()
    server = Embedded(base, "short-codes", DEVICE_CODE_LIFETIME="10", DEVICE_POLL_INTERVAL="1").start()
    try:
        done = Researcher(tmp_path / "alice", server.url).login("get", decision=None)
    finally:
        server.process.stop()
    assert done.returncode == EXIT_EXPIRED
    assert "expires in 1 minute" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("scitoken-token: the code expired before it was approved; "
                                                    "run the command again for a new code")


class Failing(BaseHTTPRequestHandler):
    """An issuer behind a proxy whose backend is down."""

    def do_GET(self):
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_issuer_unreachable_or_failing(tmp_path):
    """An issuer that cannot be reached, or answers 5xx: one line naming it, exit 3."""
    alice = Researcher(tmp_path / "alice", f"http://127.0.0.1:{free_port()}")
    done = alice.run("get")
    assert done.returncode == EXIT_UNREACHABLE
    assert done.stderr == (f"scitoken-token: cannot reach the issuer at {alice.issuer} (metadata request): "
                           "connection refused\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        alice.issuer = f"http://127.0.0.1:{server.server_port}"
        done = alice.run("get")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert done.returncode == EXIT_UNREACHABLE
    assert done.stderr == (f"scitoken-token: the issuer at {alice.issuer} answered 503 Service Unavailable to the "
                           "metadata request; it asks to retry after 30 s\n")


def test_issuer_restarting_while_the_person_approves(tmp_path):
    """RFC 8628 §3.5: a poll that cannot reach the issuer (here: it restarts while the person is in
    the browser) is not the end — the tool gave up with exit 3 at the first refused poll, and the
    approval that followed was for nothing. It says so once, backs off, keeps polling until the
    code expires, and gets the tokens once the restarted issuer has the approval."""
    base = tmp_path / "restarting"
    base.mkdir()
    server = Embedded(base, "restarting", DEVICE_POLL_INTERVAL="1").start()
    alice = Researcher(tmp_path / "alice", server.url)
    log = alice.home / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(alice.argv(("get",), True), env=alice.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        wait_until(lambda: USER_CODE.search(log.read_text()) is not None, 30, "the user code")
        server.process.stop()
        wait_until(lambda: "still waiting for approval" in log.read_text(), 30, "a failed poll")
        assert proc.poll() is None, log.read_text()
        server.start()
        approve_device(server.url, USER_CODE.search(log.read_text()).group(1))
        proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.process.stop()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert f"cannot reach the issuer at {server.url} (device access token request): connection refused; " \
           "still waiting for approval" in text
    assert text.count("still waiting for approval") == 1 + text.count("the issuer answers again")
    assert claims(alice.token_file)["sub"] == "alice"


def revoke(issuer: Embedded, kept) -> None:
    """What the researcher (or a tool acting for them) does at the revocation endpoint (RFC 7009 §2.1)."""
    revoked = requests.post(f"{issuer.url}/auth/revoke", timeout=30, auth=(kept.client_id, kept.client_secret),
                            data={"token": kept.refresh_token, "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200


def test_revoked_refresh_token_with_no_device(researcher, issuer):
    """RFC 7009: a revoked refresh token ends silent renewal with one line; --no-device (batch jobs,
    cron) stops there with exit 6 instead of waiting for a person."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    revoke(issuer, record(researcher))
    done = researcher.run("get", "--scope", SCOPE, "--minsecs", "4000", "--no-device")
    assert done.returncode == EXIT_LOGIN_NEEDED
    assert done.stderr == ("scitoken-token: the stored refresh token was revoked or has expired; a new login is "
                           "needed and --no-device forbids it\n")
    done = researcher.run("get", "--scope", SCOPE, "--no-device")  # the dead token was not kept
    assert done.returncode == EXIT_LOGIN_NEEDED and "no stored token" in done.stderr


def test_revoked_refresh_token_falls_back_to_the_device_flow(researcher, issuer):
    """RFC 7009 then RFC 8628: interactively, the CLI says the refresh token is gone and starts a new
    device login, which stores a new refresh token."""
    assert researcher.login("get", "--scope", SCOPE).returncode == 0
    old = record(researcher)
    revoke(issuer, old)
    done = researcher.login("get", "--scope", SCOPE, "--minsecs", "4000")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == ("scitoken-token: the stored refresh token was revoked or has expired; "
                                           "starting a new login")
    assert "new login" in done.stderr.splitlines()[-1]
    assert record(researcher).refresh_token != old.refresh_token
    assert claims(researcher.token_file)["jti"] != decode(old.access_token)[1]["jti"]


def test_refused_scope_prints_the_issuers_reason(researcher):
    """RFC 6749 §5.2 ``invalid_scope`` from the device poll: the issuer's reason, exit 7."""
    done = researcher.login("get", "--scope", "storage.modify:/public")
    assert done.returncode == EXIT_INVALID_SCOPE
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("scitoken-token: the device access token request refused (invalid_scope): ")
    assert "storage.modify:/public refused: no write permission on /public for user alice" in last


@pytest.mark.parametrize("args,message", [
    (("get",), "no issuer: give --issuer, set SCITOKEN_ISSUER"),
    (("get", "--issuer", "http://issuer.example.org"), "is plain http; only https is accepted"),
    (("get", "--issuer", "https://issuer.example.org", "--minsecs", "soon"), "bad arguments: argument --minsecs"),
    (("get", "--issuer", "https://issuer.example.org", "--minsecs", "-1"), "--minsecs must not be negative"),
    (("get", "--frobnicate"), "bad arguments: unrecognized arguments: --frobnicate"),
    (("get", "--issuer", "https://issuer.example.org", "--client-secret", "s"), "--client-secret needs --client-id"),
])
def test_bad_arguments(tmp_path, args, message):
    """Bad arguments: one line on stderr, exit 2, before any request."""
    done = Researcher(tmp_path / "alice", "unused").run(*args, issuer=False)
    assert done.returncode == EXIT_USAGE
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def test_scopes_command_lists_the_issuers_answers(researcher, issuer):
    """docs/researchers.md: ``scitoken-token scopes`` signs in (device flow, once), sends its own
    access token as an RFC 6750 bearer token and prints the issuer's answers; the bearer-token
    file is left alone."""
    done = researcher.login("scopes", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["user"] == "alice" and body["strict"] is True
    answers = {p["path"]: {k: v["granted"] for k, v in p["permissions"].items()} for p in body["paths"]}
    assert answers["/public"] == {"read": True, "create": False, "modify": False, "stage": True}
    assert answers["/data/physics"] == {"read": True, "create": True, "modify": True, "stage": True}
    assert answers["/data/private"] == dict.fromkeys(("read", "create", "modify", "stage"), False)
    assert body["wlcg.groups"]["groups"] == ["/alice", "/atlas", "/physics"]
    assert not researcher.token_file.exists()
    table = researcher.run("scopes", "--no-device", "--path", "/data", "--depth", "1")
    assert table.returncode == 0, table.stderr
    assert re.search(r"^  /data/physics\s+yes\s+yes\s+yes\s+yes\s*$", table.stdout, re.M), table.stdout
    assert "storage.read:/data/private refused: no read and traverse (x) permission on /data/private" in table.stdout
    assert "wlcg.groups: /alice /atlas /physics" in table.stdout
