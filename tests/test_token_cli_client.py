"""``scitoken-token``'s client side against scripted issuers (any RFC 8628 issuer, not only ours):
discovery order and checks (OpenID Connect Discovery §4, RFC 8414 §3), polling pace (RFC 8628
§3.5), the QR code, the bearer-token path order, and its dependencies (docs/researchers.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scitoken_issuer.token_cli.acquire import covers
from scitoken_issuer.token_cli.bearer import token_path
from scitoken_issuer.token_cli.device_flow import DeviceCode, DeviceLogin
from scitoken_issuer.token_cli.errors import EXIT_DENIED, EXIT_UNREACHABLE, CliError
from scitoken_issuer.token_cli.issuer import Client, Issuer

ROOT = Path(__file__).resolve().parents[1]


class Scripted:
    """A tiny issuer: GET paths answer from ``documents``; POSTs to /token pop ``polls`` in order."""

    def __init__(self, path: str = ""):
        self.documents: dict[str, tuple[int, dict]] = {}
        self.polls: list[tuple[int, dict]] = []
        self.seen: list[str] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                scripted.seen.append(f"GET {self.path}")
                self.answer(*scripted.documents.get(self.path, (404, {"error": "not_found"})))

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scripted.seen.append(f"POST {self.path}")
                self.answer(*scripted.polls.pop(0))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def start(path: str = "") -> Scripted:
        servers.append(Scripted(path))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_discovery_falls_back_to_rfc8414_with_the_path_inserted(scripted):
    """RFC 8414 §3.1: without an OpenID configuration, the well-known segment goes between the host
    and the issuer's path (``/.well-known/oauth-authorization-server/realms/x``)."""
    issuer = scripted("/realms/x")
    issuer.documents["/.well-known/oauth-authorization-server/realms/x"] = (200, {"issuer": issuer.url,
                                                                                  "token_endpoint": "x"})
    assert Issuer(issuer.url).metadata()["token_endpoint"] == "x"
    assert issuer.seen == ["GET /realms/x/.well-known/openid-configuration",
                           "GET /.well-known/oauth-authorization-server/realms/x"]


def test_discovery_refuses_metadata_naming_another_issuer(scripted):
    """RFC 8414 §3.3: the ``issuer`` in the metadata must be the URL asked for (no mix-up)."""
    issuer = scripted()
    issuer.documents["/.well-known/openid-configuration"] = (200, {"issuer": "https://elsewhere.example"})
    with pytest.raises(CliError) as failure:
        Issuer(issuer.url).metadata()
    assert failure.value.code == EXIT_UNREACHABLE
    assert "names the issuer 'https://elsewhere.example'" in str(failure.value)


def poll_with(issuer: Scripted, polls: list[tuple[int, dict]], interval: int = 2):
    issuer.documents["/.well-known/openid-configuration"] = (200, {"issuer": issuer.url,
                                                                   "token_endpoint": f"{issuer.url}/token"})
    issuer.polls = polls
    naps: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += seconds

    login = DeviceLogin(Issuer(issuer.url), Client("cli"), io.StringIO(), sleep=sleep, clock=lambda: clock[0])
    code = DeviceCode("dc", "BCDFG-HJKLM", f"{issuer.url}/device", None, 600, interval)
    return login, code, naps


def test_polling_honours_interval_and_slow_down(scripted):
    """RFC 8628 §3.5: wait ``interval`` before each poll; each ``slow_down`` adds 5 seconds for
    this and every later poll."""
    issuer = scripted()
    login, code, naps = poll_with(issuer, [(400, {"error": "authorization_pending"}), (400, {"error": "slow_down"}),
                                           (400, {"error": "authorization_pending"}), (400, {"error": "slow_down"}),
                                           (200, {"access_token": "a.b.c", "token_type": "Bearer"})])
    assert login.poll(code)["access_token"] == "a.b.c"
    assert naps == [2, 2, 7, 7, 12]


def test_polling_stops_on_a_denial(scripted):
    """RFC 8628 §3.5 ``access_denied`` is final: no further poll."""
    issuer = scripted()
    login, code, naps = poll_with(issuer, [(400, {"error": "access_denied"})])
    with pytest.raises(CliError) as failure:
        login.poll(code)
    assert failure.value.code == EXIT_DENIED and len(naps) == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_qr_code_only_on_a_terminal():
    """docs/researchers.md: ``verification_uri_complete`` is drawn as a QR code only where a
    person reads a terminal; piped output carries the URL and code alone."""
    pytest.importorskip("segno")
    code = DeviceCode("dc", "BCDFG-HJKLM", "https://issuer.example/device", "https://issuer.example/device?c=1", 600, 5)
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        DeviceLogin(Issuer("https://issuer.example"), Client("cli"), stream).show(code)
        text = stream.getvalue()
        assert "enter the code  BCDFG-HJKLM" in text and "(or open https://issuer.example/device?c=1)" in text
        assert ("\u2588" in text) is drawn


def test_bearer_token_path_order():
    """WLCG Bearer Token Discovery: BEARER_TOKEN_FILE, then XDG_RUNTIME_DIR/bt_u<uid>, then /tmp/bt_u<uid>."""
    assert token_path({"BEARER_TOKEN_FILE": "/x/t", "XDG_RUNTIME_DIR": "/run/user/7"}, 7) == Path("/x/t")
    assert token_path({"XDG_RUNTIME_DIR": "/run/user/7"}, 7) == Path("/run/user/7/bt_u7")
    assert token_path({"BEARER_TOKEN_FILE": "", "XDG_RUNTIME_DIR": ""}, 7) == Path("/tmp/bt_u7")


def test_a_registration_covers_scopes_below_its_paths():
    """The CLI registers again only for scopes its registration does not cover (WLCG scopes are
    recursive: ``storage.read:/`` covers ``storage.read:/data``)."""
    held = "openid offline_access wlcg.groups storage.read:/ storage.create:/data"
    assert covers(held, ("openid", "storage.read:/data/x", "storage.create:/data/y", "wlcg.groups:/atlas"))
    assert not covers(held, ("storage.create:/datax",))
    assert not covers(held, ("storage.modify:/data",))
    assert not covers(held, ("profile",))


def test_the_cli_needs_only_the_standard_library_and_requests():
    """docs/researchers.md: ``scitoken-token`` runs on a login node with ``requests`` alone: running
    it imports no third-party module but requests (and what requests imports)."""
    probe = ("import sys\nbefore = set(sys.modules)\nimport scitoken_issuer.token_cli.commands\n"
             "new = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)\n"
             "print(' '.join(sorted(m for m in new if not m.endswith('__mypyc'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) <= {"scitoken_issuer", "requests", "urllib3", "idna", "charset_normalizer",
                                        "chardet", "certifi"}, done.stdout
