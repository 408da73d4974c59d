"""docs/scopes.md, as real verifiers read it: SciTokens-spelled ``create:/p`` and ``modify:/p``
obtained through the device flow (RFC 8628, over HTTPS, by a client anyone could register, RFC
7591) are refused with ``invalid_scope`` where the POSIX rule says no, and where they are granted,
``scitokens-test-access`` (scitokens-cpp) and the Python ``scitokens.Enforcer`` allow exactly what
the kernel allows the user — asked as the user, with ``os.access`` in a process running as them.

Needs root (chown, and switching to the user's uid for the kernel's answer).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scitoken_issuer.extensions import db

from .conftest import make_app
from .support.https import serve_https
from .support.processes import free_port
from .support.tls import bundle_with, make_tls, trust_for_verifiers
from .test_policy import ALICE, ANA, ATLAS, BOB, build_tree, write_users
from .test_verifiers import _cpp_tool, run_cpp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown and setuid: needs root")

AUDIENCE = "https://storage.example.org"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ATTACKER_SCOPE = ("openid read:/data/ana/out create:/data/ana/out modify:/data/ana/out "
                  "create:/data/ana modify:/data/ana storage.create:/data/ana/out")
#: scope paths probed; "/data/ana/out/new.dat" does not exist (its parent decides)
PROBES = ["/data/ana/out", "/data/ana/out/new.dat", "/data/ana", "/data/ana/new.dat", "/data/ana/public",
          "/data/cms/x", "/data"]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Site:
    url: str
    root: Path  # POSIX_PATH
    bundle: Path  # system CAs plus the test CA


@pytest.fixture(scope="module")
def site():
    """The issuer over HTTPS on 127.0.0.1 with the development login, over a real tree whose
    ancestors everyone may traverse (so the kernel can answer as alice)."""
    base = Path(tempfile.mkdtemp(prefix="verifier-scopes-", dir="/tmp"))
    base.chmod(0o755)
    ca, cert, key = make_tls(base)
    bundle = bundle_with(ca, base / "bundle.pem")
    root = Path(build_tree(base))
    drop = root / "data" / "ana" / "drop"  # like /tmp: anyone may create, only owners delete
    drop.mkdir()
    drop.chmod(0o1777)
    (drop / "bob.dat").write_text("bob's")
    os.chown(drop / "bob.dat", BOB, BOB)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    app = make_app(base, ISSUER_ADDRESS=url, AUDIENCE=AUDIENCE, POSIX_PATH=str(root),
                   DEV_USERS_FILE=write_users(base / "users.json"))
    try:
        with serve_https(app, port, cert, key, name="https-issuer"):
            yield Site(url, root, bundle)
    finally:
        with app.app_context():
            db.engine.dispose()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def trust(site, tmp_path, monkeypatch):
    """Trust the test CA; a fresh key cache for the Python library."""
    return trust_for_verifiers(site.bundle, tmp_path / "cache", monkeypatch)


class Browser:
    """alice at the verification page, signed in with the development login (CSRF and a
    same-origin Referer on every form, as a browser sends them)."""

    def __init__(self, site: Site):
        self.site = site
        self.http = requests.Session()
        self.http.headers["Referer"] = f"{site.url}/"
        form = self.http.get(f"{site.url}/auth/login?next=/auth/device")
        done = self.http.post(f"{site.url}/auth/login", data={
            "username": "alice", "password": "pw", "next": "/auth/device", "csrf_token": _csrf(form.text)})
        assert done.status_code == 200 and done.url.endswith("/auth/device"), done.text[:500]

    def approve(self, user_code: str) -> str:
        """Open the consent page for ``user_code``, approve; returns the consent page."""
        page = self.http.get(f"{self.site.url}/auth/device", params={"user_code": user_code})
        assert page.status_code == 200, page.text[:500]
        done = self.http.post(f"{self.site.url}/auth/device", data={
            "user_code": user_code, "decision": "approve", "csrf_token": _csrf(page.text)})
        assert done.status_code == 200, done.text[:500]
        return page.text


def _csrf(html: str) -> str:
    match = _CSRF.search(html)
    assert match, html[:500]
    return match.group(1)


def device_flow(site: Site, browser: Browser, client_id: str, scope: str) -> requests.Response:
    """RFC 8628: device authorization, alice approves in the browser, the device polls once."""
    start = requests.post(f"{site.url}/auth/device/code", data={"client_id": client_id, "scope": scope}, timeout=30)
    assert start.status_code == 200, start.text
    browser.approve(start.json()["user_code"])
    return requests.post(f"{site.url}/auth/token", timeout=30, data={
        "grant_type": DEVICE_GRANT, "device_code": start.json()["device_code"], "client_id": client_id})


def kernel_allows(site: Site, verb: str, path: str) -> bool:
    """Whether the kernel lets alice (uid, primary gid and groups) do ``verb`` at scope ``path``:
    read needs r (and x on a directory); create/modify/write need w and x on the directory, or w
    on a file; a missing path is decided by its nearest existing ancestor."""
    target = site.root / path.lstrip("/")
    while not target.exists():
        target = target.parent
    checks = ["-r" if verb == "read" else "-w"] + (["-x"] if target.is_dir() else [])
    script = " && ".join(f'test {flag} "$1"' for flag in checks)  # test(1) asks access(2)
    done = subprocess.run(["/bin/sh", "-c", script, "sh", str(target)], user=ALICE, group=ALICE,
                          extra_groups=[ANA, ATLAS], timeout=30, env={"PATH": "/usr/bin:/bin"})
    return done.returncode == 0


def register(site: Site, profile: str, scope: str) -> str:
    """RFC 7591 registration as anyone may do it: a public device-flow client."""
    registered = requests.post(f"{site.url}/auth/client/registration", timeout=30, json={
        "client_name": "anyone's tool", "grant_types": [DEVICE_GRANT], "token_endpoint_auth_method": "none",
        "token_profile": profile, "scope": scope})
    assert registered.status_code == 201, registered.text
    return registered.json()["client_id"]


def test_device_flow_scitokens_verbs_as_verifiers_read_them(site, trust, tmp_path):
    """An anonymously registered SciTokens client (docs/scopes.md: storage verbs in either
    spelling are storage scopes) asks for ``modify:/data/ana`` and ``create:/data/ana``, which
    alice may not write: RFC 6749 §5.2 ``invalid_scope``. Asked for ``/data/ana/out``, where her
    group may write, the token carries the verbs as asked, and both verifiers allow exactly what
    the kernel allows alice within them, and nothing outside them."""
    import scitokens

    client_id = register(site, "scitokens", ATTACKER_SCOPE)
    browser = Browser(site)

    for scope in ("modify:/data/ana", "create:/data/ana", "read:/data/ana/out modify:/data/ana"):
        refused = device_flow(site, browser, client_id, scope)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_scope"
        assert "refused: no write permission on /data/ana for user alice" in refused.json()["error_description"]
        assert not kernel_allows(site, scope.split()[-1].partition(":")[0], "/data/ana")  # the kernel agrees

    granted = device_flow(site, browser, client_id, "read:/data/ana/out create:/data/ana/out modify:/data/ana/out")
    assert granted.status_code == 200, granted.text
    token = granted.json()["access_token"]
    assert granted.json()["scope"] == "read:/data/ana/out create:/data/ana/out modify:/data/ana/out"

    parsed = scitokens.SciToken.deserialize(token, audience=AUDIENCE)
    enforcer = scitokens.Enforcer(site.url, audience=AUDIENCE)
    tool = _cpp_tool("scitokens-test-access")
    for verb in ("read", "create", "modify"):
        for path in PROBES:
            in_token = path == "/data/ana/out" or path.startswith("/data/ana/out/")
            expected = in_token and kernel_allows(site, verb, path)
            assert enforcer.test(parsed, verb, path) is expected, (verb, path, enforcer.last_failure)
            cpp = run_cpp([tool, token, site.url, AUDIENCE, verb, path], trust, tmp_path)
            assert (cpp.returncode == 0) is expected, (verb, path, cpp.stdout + cpp.stderr)
        assert kernel_allows(site, verb, "/data/ana/out"), verb  # granted, and the kernel agrees
    # "write" (overwrite and delete for XRootD and dCache) was never asked for, so never granted
    assert not enforcer.test(parsed, "write", "/data/ana/out/new.dat")

    # the WLCG spelling storage.create in a SciTokens token is create, which scitokens-cpp does not
    # read as write (docs/scopes.md "Tokens")
    created = device_flow(site, browser, client_id, "storage.create:/data/ana/out")
    assert created.status_code == 200, created.text
    assert created.json()["scope"] == "create:/data/ana/out"
    as_write = run_cpp([tool, created.json()["access_token"], site.url, AUDIENCE, "write", "/data/ana/out/f"],
                       trust, tmp_path)
    assert as_write.returncode != 0, as_write.stdout


def test_create_in_each_profile_as_verifiers_read_it(site, trust, tmp_path):
    """docs/scopes.md: scitokens-cpp reads ``storage.create`` in a WLCG token as ``write`` too, so a
    WLCG-profile client gets it only where modify would pass; in a sticky directory holding bob's
    file (alice may create there, not delete) it is ``invalid_scope``. A SciTokens-profile client
    gets ``create:/p`` there, which scitokens-cpp and the Python Enforcer read as create only."""
    import scitokens

    browser = Browser(site)
    tool = _cpp_tool("scitokens-test-access")
    wlcg = register(site, "wlcg", "storage.create:/data/ana")
    granted = device_flow(site, browser, wlcg, "storage.create:/data/ana/out")
    assert granted.status_code == 200, granted.text
    as_write = run_cpp([tool, granted.json()["access_token"], site.url, AUDIENCE, "write", "/data/ana/out/f"],
                       trust, tmp_path)
    assert as_write.returncode == 0, as_write.stdout  # how scitokens-cpp reads it ...
    assert kernel_allows(site, "modify", "/data/ana/out")  # ... and alice may indeed overwrite there
    refused = device_flow(site, browser, wlcg, "storage.create:/data/ana/drop")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope", refused.text
    assert "sticky" in refused.json()["error_description"]

    sci = register(site, "scitokens", "create:/data/ana")
    created = device_flow(site, browser, sci, "create:/data/ana/drop")
    assert created.status_code == 200, created.text
    token = created.json()["access_token"]
    assert created.json()["scope"] == "create:/data/ana/drop"
    assert kernel_allows(site, "create", "/data/ana/drop/new.dat")
    for verb, allowed in (("create", True), ("write", False), ("modify", False)):
        done = run_cpp([tool, token, site.url, AUDIENCE, verb, "/data/ana/drop/bob.dat"], trust, tmp_path)
        assert (done.returncode == 0) is allowed, (verb, done.stdout)
        enforcer = scitokens.Enforcer(site.url, audience=AUDIENCE)
        assert enforcer.test(scitokens.SciToken.deserialize(token, audience=AUDIENCE), verb,
                             "/data/ana/drop/bob.dat") is allowed, verb
