"""docs/authorization.md, precomputed caches: the Celery tasks ``refresh_group_cache`` and ``rebuild_tree_index``
(in process and with a real Redis), their locks, the 503 for a missing index, and the operator
commands ``check-scope``, ``cache refresh|show`` and ``scan-tree``.

The tree is built with chown (needs root, as CI runs).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import redis

from scitoken_issuer.background import dispatch
from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.login import SESSION_KEY, SignedIn
from scitoken_issuer.services.tree_index import scan_tree
from scitoken_issuer.services.tree_store import TreeIndexMissing
from tests.conftest import TEST_SECRET, make_app
from tests.support.processes import ManagedProcess, wait_until
from tests.test_policy import build_tree, write_users
from tests.test_token_scopes_http import REDIRECT_URI, authorize_url, pkce
from workers.tasks import rebuild_tree_index, refresh_group_cache

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

INDEX_KEY = "scitoken-issuer:tree-index"


def _app(tmp_path, **overrides):
    settings = {"POSIX_PATH": build_tree(tmp_path), "DEV_USERS_FILE": write_users(tmp_path / "users.json")}
    settings.update(overrides)
    return make_app(tmp_path, **{k: v for k, v in settings.items() if v is not None})


def _close(app) -> None:
    """Close what the app opened: database, Redis pool, Celery's broker connections."""
    with app.app_context():
        if runtime().redis is not None:
            runtime().redis.close()
        db.engine.dispose()
    app.extensions["celery"].close()


@pytest.fixture
def app(tmp_path):
    """In process: no REDIS_URL, so caches live in this process and tasks run eagerly."""
    app = _app(tmp_path)
    with app.app_context():
        yield app
    _close(app)


@pytest.fixture
def redis_app(tmp_path, redis_url):
    """With Redis; a missing index answers 503 at once (``TREE_INDEX_WAIT=0``) unless a test waits."""
    app = _app(tmp_path, REDIS_URL=redis_url, TREE_INDEX_WAIT=0)
    yield app
    _close(app)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# -- the tasks ----------------------------------------------------------------------------

def test_tasks_in_process_fill_cache_and_index(app):
    """docs/authorization.md: without REDIS_URL the tasks run in process and fill the in-process stores."""
    stats = refresh_group_cache()
    assert (stats["users"], stats["groups"]) == (2, 5)
    assert runtime().groups.last_precompute()["users"] == 2
    assert runtime().groups.get("alice").group_names == ["alice", "ana", "atlas"]
    assert dispatch(refresh_group_cache).get()["users"] == 2  # eager through Celery too

    result = rebuild_tree_index()
    assert result == {"directories": 7, "boundaries": len(runtime().tree.get())}
    assert "/data/ana/private" in {b.path for b in runtime().tree.get()}


def test_tasks_with_redis_fill_shared_stores(redis_app, redis_client, tmp_path):
    """docs/authorization.md: with Redis the task results are shared by every process (here: a second app)."""
    with redis_app.app_context():
        with pytest.raises(TreeIndexMissing):
            runtime().tree.get()  # the web side never scans: a worker builds the index
        assert refresh_group_cache()["users"] == 2
        result = rebuild_tree_index()
        assert result["directories"] == 7
    cached = json.loads(redis_client.get("scitoken-issuer:groups:u:alice"))
    assert cached[1:3] == [20001, 20001]
    assert json.loads(redis_client.get(INDEX_KEY))["directories"] == 7

    other = make_app(tmp_path / "other", REDIS_URL=redis_app.config["REDIS_URL"],
                     POSIX_PATH=redis_app.config["POSIX_PATH"], DEV_USERS_FILE=redis_app.config["DEV_USERS_FILE"])
    try:
        with other.app_context():
            assert runtime().tree.get().directories == 7
            assert runtime().groups.last_precompute()["users"] == 2
    finally:
        _close(other)


class BlockingSource:
    """Wraps a group source so that a precompute pass waits inside the lock until released."""

    def __init__(self, inner) -> None:
        self.inner, self.entered, self.release = inner, threading.Event(), threading.Event()

    def lookup(self, username):
        return self.inner.lookup(username)

    def iter_users(self):
        self.entered.set()
        assert self.release.wait(30)
        yield from self.inner.iter_users()


@pytest.mark.parametrize("with_redis", [False, True], ids=["in-process", "redis"])
def test_group_refresh_lock_prevents_overlap(request, tmp_path, with_redis):
    """Periodic tasks are locked (STYLE §6): a second refresh while one runs does nothing."""
    app = _app(tmp_path, REDIS_URL=request.getfixturevalue("redis_url") if with_redis else None)
    try:
        with app.app_context():
            groups = runtime().groups
            groups.source = blocking = BlockingSource(groups.source)
        results: list = []

        def run_first() -> None:
            with app.app_context():
                results.append(refresh_group_cache())

        first = threading.Thread(target=run_first)
        first.start()
        try:
            assert blocking.entered.wait(30)
            with app.app_context():
                assert refresh_group_cache() is None
                cli = app.test_cli_runner().invoke(args=["cache", "refresh"])
                assert cli.exit_code == 1 and "already running" in cli.output
        finally:
            blocking.release.set()
            first.join(30)
        assert results[0]["users"] == 2
    finally:
        _close(app)


def test_tree_rebuild_lock_prevents_overlap(redis_app, redis_client):
    """The index task holds a Redis lock; a run that finds it taken stores nothing."""
    lock = redis_client.lock("scitoken-issuer:lock:tree-index", timeout=60)
    assert lock.acquire(blocking=False)
    with redis_app.app_context():
        assert rebuild_tree_index() is None
        assert redis_client.get(INDEX_KEY) is None
        lock.release()
        assert rebuild_tree_index()["directories"] == 7


def signed_in_portal(redis_app):
    """A public "portal" client allowed storage.read:/data, and a browser signed in as alice."""
    with redis_app.app_context():
        registration = runtime().clients.register(
            {"client_name": "portal", "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI],
             "token_endpoint_auth_method": "none", "scope": "openid storage.read:/data"}, admin=True, source="admin")
        db.session.commit()
        oauth = SimpleNamespace(client_id=registration.client.client_id)
    client = redis_app.test_client()
    with client.session_transaction() as session:
        session[SESSION_KEY] = SignedIn("alice", None, int(time.time()), {}).to_session()
    return client, oauth


def test_missing_index_answers_503_and_requests_a_rebuild(redis_app, redis_client):
    """Rule 4 of docs/authorization.md: no strict index yet — 503 with Retry-After (never a grant), and one
    rebuild_tree_index task is sent to the workers; once built, the request goes through."""
    client, oauth = signed_in_portal(redis_app)
    _, challenge = pkce()
    url = authorize_url(oauth, "storage.read:/data/ana/out", challenge)
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert "permission index" in response.get_data(as_text=True)
    queued = [json.loads(m)["headers"]["task"] for m in redis_client.lrange("celery", 0, -1)]
    assert queued == ["workers.tasks.rebuild_tree_index"]  # requested once, not per request
    with redis_app.app_context():
        rebuild_tree_index()  # what the worker does with that message
    assert client.get(url).status_code == 200



def test_storage_request_waits_for_an_index_being_built(tmp_path, redis_url, redis_client):
    """docs/authorization.md, the index: a fresh deployment's first storage request asks a worker for
    the index and waits up to TREE_INDEX_WAIT seconds for it, instead of answering 503 at once."""
    app = _app(tmp_path, REDIS_URL=redis_url, TREE_INDEX_WAIT=10)
    try:
        with app.app_context():
            root, requested = runtime().tree.root, []

            def worker_builds_soon() -> None:  # what a worker does with the request, a moment later
                requested.append(True)
                threading.Timer(0.5, lambda: redis_client.set(INDEX_KEY, scan_tree(root).to_json())).start()

            runtime().tree.request_build = worker_builds_soon
        client, oauth = signed_in_portal(app)
        _, challenge = pkce()
        started = time.monotonic()
        response = client.get(authorize_url(oauth, "storage.read:/data/ana/out", challenge))
        assert response.status_code == 200 and requested == [True]
        assert time.monotonic() - started < 10
    finally:
        _close(app)


def test_worker_start_builds_a_missing_index(tmp_path, redis_url, redis_client):
    """docs/authorization.md, the index: a real Celery worker that starts while no index is stored
    builds one, with no request and no operator command."""
    assert redis_client.get(INDEX_KEY) is None
    env = {"REDIS_URL": redis_url, "POSIX_PATH": build_tree(tmp_path),
           "DEV_USERS_FILE": write_users(tmp_path / "users.json"), "SECRET_KEY": TEST_SECRET,
           "INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}
    worker = ManagedProcess("worker", [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                                       "--pool=threads", "--concurrency=2", "--without-gossip", "--without-mingle",
                                       "--without-heartbeat"], tmp_path, env=env).start()
    try:
        def built() -> bool:
            if not worker.alive():
                raise RuntimeError(f"celery worker exited:\n{worker.log()}")
            return redis_client.get(INDEX_KEY) is not None
        wait_until(built, 60, "the worker to build the missing index")
        assert json.loads(redis_client.get(INDEX_KEY))["directories"] == 7
    finally:
        worker.stop()


def test_redis_down_answers_503_never_a_grant(redis_app, redis_server):
    """docs/authorization.md (a dependency down): Redis down and no index in this process yet — 503 with Retry-After."""
    client, oauth = signed_in_portal(redis_app)
    _, challenge = pkce()
    redis_server.stop()
    response = client.get(authorize_url(oauth, "storage.read:/data/ana/out", challenge))
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "Redis" in response.get_data(as_text=True)

# -- the commands -------------------------------------------------------------------------

def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_check_scope_granted(app):
    result = cli(app, "check-scope", "alice", "storage.read:/data/ana/out", "storage.create:/data/ana/out/new")
    assert result.exit_code == 0, result.output
    assert "GRANTED storage.read:/data/ana/out" in result.output
    assert "GRANTED storage.create:/data/ana/out/new" in result.output
    assert "/data/ana/out (nearest existing ancestor)" in result.output
    assert "group class" in result.output


def test_check_scope_refused_says_which_directory_class_bit_and_step(app):
    """docs/authorization.md: the operator sees the directory, the class, the missing bit and the rule."""
    result = cli(app, "check-scope", "alice", "storage.read:/data/ana/out", "storage.create:/data/ana",
                 "storage.read:/data/ana", "wlcg.groups:/cms")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "GRANTED storage.read:/data/ana/out" in out
    assert "REFUSED storage.create:/data/ana" in out
    assert "decided by: /data/ana, group class, missing w, mode 0755 owner 0 group 21000" in out
    assert "refused at rule 2 of docs/authorization.md" in out
    assert "REFUSED storage.read:/data/ana\n" in out
    assert "/data/ana/private" in out and "refused at rule 4 of docs/authorization.md" in out
    assert "REFUSED wlcg.groups:/cms" in out and "alice is not a member of group /cms" in out


def test_check_scope_with_client_policy(app, make_client):
    registered, _ = make_client(scope="storage.read:/data", grant_types=["client_credentials"])
    result = cli(app, "check-scope", "--client", registered.client_id, "alice", "storage.create:/data/ana/out")
    assert result.exit_code == 1
    assert "not allowed for client" in result.output


@pytest.mark.parametrize("args,message", [
    (["nobody", "storage.read:/data"], "unknown user 'nobody'"),
    (["alice", "storage.read:data"], "malformed scope 'storage.read:data'"),
    (["alice", "storage.read:/data/../etc"], "malformed scope"),
    (["--client", "no-such-client", "alice", "openid"], "unknown client"),
])
def test_check_scope_bad_input_exits_2(app, args, message):
    result = cli(app, "check-scope", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_check_scope_without_posix_path(tmp_path):
    app = _app(tmp_path)
    app_without = make_app(tmp_path / "bare", DEV_USERS_FILE=app.config["DEV_USERS_FILE"])
    try:
        result = cli(app_without, "check-scope", "alice", "storage.read:/data")
        assert result.exit_code == 1
        assert "POSIX_PATH is not configured" in result.output
        result = cli(app_without, "scan-tree")
        assert result.exit_code == 2 and "set POSIX_PATH" in result.output
    finally:
        _close(app)
        _close(app_without)


def test_check_scope_with_missing_index_exits_3_until_stored(redis_app):
    """Rule 4 of docs/authorization.md: without a strict index the command says so (exit 3); ``scan-tree --store``
    builds it, and then the decision is made."""
    result = cli(redis_app, "check-scope", "alice", "storage.read:/data/ana/out")
    assert result.exit_code == 3 and "scan-tree --store" in result.output
    stored = cli(redis_app, "scan-tree", "--store")
    assert stored.exit_code == 0 and "stored as the live strict-mode index" in stored.output
    assert cli(redis_app, "check-scope", "alice", "storage.read:/data/ana/out").exit_code == 0


def test_cache_refresh_and_show(app):
    result = cli(app, "cache", "refresh")
    assert result.exit_code == 0 and result.output.startswith("2 users, 5 groups in ")
    result = cli(app, "cache", "refresh", "--async")
    assert result.exit_code == 0 and result.output.startswith("2 users, 5 groups in ")
    shown = cli(app, "cache", "show", "alice")
    assert shown.exit_code == 0
    assert "alice: uid 20001, primary gid 20001" in shown.output
    assert "21000  ana" in shown.output and "21001  atlas" in shown.output
    assert "last precompute:" in shown.output and "2 users" in shown.output
    missing = cli(app, "cache", "show", "nobody")
    assert missing.exit_code == 2 and "unknown user 'nobody'" in missing.output


def test_cache_refresh_async_with_redis_queues_the_task(redis_app, redis_client):
    result = cli(redis_app, "cache", "refresh", "--async")
    assert result.exit_code == 0 and "queued refresh_group_cache" in result.output
    queued = [json.loads(m)["headers"]["task"] for m in redis_client.lrange("celery", 0, -1)]
    assert queued == ["workers.tasks.refresh_group_cache"]


def test_cache_refresh_async_with_redis_down_says_so(redis_app, redis_server):
    """docs/errors.md: the task cannot be sent while Redis is down: one line and exit 3, no traceback."""
    redis_server.stop()
    try:
        result = cli(redis_app, "cache", "refresh", "--async")
    finally:
        redis_server.start()
    assert result.exit_code == 3, result.output
    assert "Redis is unavailable" in result.output and "Traceback" not in result.output


def test_scan_tree_prints_boundaries(app, tmp_path):
    """Rule 4 of docs/authorization.md: the entries where owner, group or mode change."""
    result = cli(app, "scan-tree")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("# ") and "7 directories scanned" in lines[0]
    assert "/data/ana/private  owner 20002 group 20002 mode 0700" in lines
    assert "/data/ana  owner 0 group 21000 mode 0755" in lines
    assert "/data/ana/out  owner 0 group 21000 mode 0775" in lines
    assert "stored" not in result.output

    other = cli(app, "scan-tree", os.path.join(app.config["POSIX_PATH"], "data"))
    assert other.exit_code == 0 and "/ana/private  owner 20002" in other.output

    stored = cli(app, "scan-tree", "--store")
    assert stored.exit_code == 0 and "stored as the live strict-mode index" in stored.output


@pytest.mark.parametrize("args,message", [
    (["/nonexistent/tree"], "cannot scan /nonexistent/tree"),
    (["--store", "/tmp"], "--store keeps the index of POSIX_PATH"),
])
def test_scan_tree_bad_input_exits_2(app, args, message):
    result = cli(app, "scan-tree", *args)
    assert result.exit_code == 2
    assert message in result.output
