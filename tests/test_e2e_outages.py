"""Outages mid-flight under the real process model (docs/errors.md, "A dependency that is down is a
503"): gunicorn as the Procfile runs it, a real Celery worker, Redis, PostgreSQL, slapd and the
node IdP; each test stops or kills one of them while a flow is under way and checks that what was
accepted before is still there once it is back."""

from __future__ import annotations

import os
import signal
import time

import ldap3
import pytest
import requests

from .support.e2e import CLIENT_ID, CLIENT_REDIRECT, CLIENT_SECRET, csrf_token
from .support.processes import wait_until
from .test_e2e_flows import code_flow, device_poll, device_start, poll_until, sign_in_through_idp, storage_tree  # noqa: F401

pytestmark = pytest.mark.e2e


def approve(stack, http, consent, user_code: str):
    done = http.post(f"{stack.url}/auth/device", data={"user_code": user_code, "decision": "approve",
                                                      "csrf_token": csrf_token(consent.text)})
    assert done.status_code == 200 and "You approved" in done.text, done.text[:500]


def test_device_approvals_survive_a_killed_worker_and_redis_losing_its_queue(issuer_stack, storage_tree,
                                                                          redis_server, slapd):
    """RFC 8628 §3.3 / docs/flows.md, flow 2: an approval the verification page accepted is not
    lost when the worker deciding it is killed mid-task (its message would wait unacknowledged
    in Redis for an hour), nor when Redis restarts without the queued task: the device's next
    pending polls send it to a worker again, and the device gets its tokens exactly once."""
    stack = issuer_stack(POSIX_PATH=str(storage_tree), GROUP_CACHE_TTL=0)  # the worker asks LDAP
    killed, queued = device_start(stack), device_start(stack)
    pages = {}
    for flow in (killed, queued):
        http = stack.http()
        pages[flow["user_code"]] = http, sign_in_through_idp(
            stack, http, f"{stack.url}/auth/device?user_code={flow['user_code']}")

    # the worker takes the first approval, waits on a hung LDAP server, and is killed
    os.kill(slapd.process.proc.pid, signal.SIGSTOP)
    try:
        approve(stack, *pages[killed["user_code"]], killed["user_code"])
        wait_until(lambda: "complete_device_authorization" in stack.worker.log(), 10, "the worker to take the task")
        stack.worker.stop(signal.SIGKILL)
    finally:
        os.kill(slapd.process.proc.pid, signal.SIGCONT)
    # the second approval waits in the queue, which Redis then loses
    approve(stack, *pages[queued["user_code"]], queued["user_code"])
    redis_server.stop()
    redis_server.start()

    stack.start_worker()
    for flow in (killed, queued):
        answer = poll_until(stack, flow["device_code"], timeout=30)
        assert answer.status_code == 200, answer.text
        again = poll_until(stack, flow["device_code"], timeout=5)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "Traceback" not in stack.web.log()


def test_group_change_and_ldap_outage_at_refresh(issuer_stack, storage_tree, slapd_factory):
    """docs/authorization.md, "Inputs": a group removed in LDAP refuses, once the cached answer is
    older than GROUP_CACHE_TTL, the storage scope it gave at the next refresh (``invalid_scope``,
    RFC 6749 §5.2; the refresh token stays usable, docs/tokens.md); with LDAP down an answer up to
    GROUP_CACHE_MAX_STALENESS old is served, then 503 with ``Retry-After``; back up, it serves."""
    directory = slapd_factory()
    stack = issuer_stack(POSIX_PATH=str(storage_tree), LDAP_URL=directory.url, GROUP_CACHE_TTL=2,
                         GROUP_CACHE_MAX_STALENESS=4)
    scope = "openid offline_access storage.create:/atlas/run1"  # /atlas/run1 is writable by group atlas only
    _http, verifier, params = code_flow(stack, scope)
    tokens = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                          "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier}).json()
    atlas = "cn=atlas,ou=groups,dc=example,dc=org"
    admin = ldap3.Connection(ldap3.Server(directory.url), directory.admin_dn, directory.admin_password,
                             auto_bind=True)

    def refresh():
        return stack.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})

    def refresh_until(condition, timeout):
        deadline = time.monotonic() + timeout
        while True:
            answer = refresh()
            if condition(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.25)

    try:
        admin.modify(atlas, {"memberUid": [(ldap3.MODIFY_DELETE, ["alice"])]})
        refused = refresh_until(lambda a: a.status_code != 200, 2 + 1)  # TTL, and a second of slack
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope", refused.text
        assert "storage.create:/atlas/run1" in refused.json()["error_description"]
        admin.modify(atlas, {"memberUid": [(ldap3.MODIFY_ADD, ["alice"])]})
        again = refresh_until(lambda a: a.status_code == 200, 2 + 1)
        assert again.status_code == 200, again.text  # the refused refresh left the token as it was
        tokens = again.json()
    finally:
        admin.unbind()

    directory.stop()
    served = refresh()  # the answer read when the membership came back is younger than the bound
    assert served.status_code == 200, served.text
    tokens = served.json()
    down = refresh_until(lambda a: a.status_code != 200, 4 + 1)
    assert down.status_code == 503 and down.headers["Retry-After"].isdigit(), down.text
    assert down.json()["error"] == "temporarily_unavailable"
    directory.start()
    back = refresh_until(lambda a: a.status_code == 200, 10)
    assert back.status_code == 200, back.text
    assert "Traceback" not in stack.web.log()


def test_database_restart_mid_flight(own_postgres, issuer_stack, storage_tree):  # the stack stops first
    """docs/errors.md: with PostgreSQL stopped, refresh, introspection of a refresh token,
    registration, device authorization and the verification page answer 503 with ``Retry-After``
    (a pending device poll still answers from Redis); once it is back the connection pools of the
    web processes and of the worker recover without a restart (docs/configuration.md,
    "PostgreSQL"), and the refresh token answered before the outage is the one that works (no
    half-rotated family, docs/tokens.md)."""
    stack = issuer_stack(POSIX_PATH=str(storage_tree), DATABASE_URL=own_postgres.url)
    _http, verifier, params = code_flow(stack, "openid offline_access storage.read:/atlas")
    first = stack.token({"grant_type": "authorization_code", "code": params["code"][0],
                         "redirect_uri": CLIENT_REDIRECT, "code_verifier": verifier}).json()
    answered = stack.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert answered.status_code == 200, answered.text
    device = device_start(stack)
    http = stack.http()
    consent = sign_in_through_idp(stack, http, f"{stack.url}/auth/device?user_code={device['user_code']}")

    own_postgres.process.stop(signal.SIGINT)
    down = [stack.token({"grant_type": "refresh_token", "refresh_token": answered.json()["refresh_token"]}),
            requests.post(f"{stack.url}/auth/introspect", data={"token": answered.json()["refresh_token"]},
                          auth=(CLIENT_ID, CLIENT_SECRET), timeout=30),
            requests.post(f"{stack.url}/auth/client/registration", json={"redirect_uris": ["https://a.example/cb"]},
                          timeout=30),
            requests.post(f"{stack.url}/auth/device/code", auth=(CLIENT_ID, CLIENT_SECRET), timeout=30)]
    for answer in down:
        assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit(), answer.text
        assert answer.json()["error"] == "temporarily_unavailable"
    page = http.post(f"{stack.url}/auth/device", data={"user_code": device["user_code"], "decision": "approve",
                                                      "csrf_token": csrf_token(consent.text)})
    assert page.status_code == 503 and "database" in page.text and page.headers["Retry-After"].isdigit()
    time.sleep(1.1)
    assert device_poll(stack, device["device_code"]).json()["error"] == "authorization_pending"

    own_postgres._serve()
    token = answered.json()["refresh_token"]
    for _ in range(4):  # spread over both web processes
        again = stack.token({"grant_type": "refresh_token", "refresh_token": token})
        assert again.status_code == 200, again.text
        token = again.json()["refresh_token"]
    approve(stack, http, consent, device["user_code"])
    assert poll_until(stack, device["device_code"], timeout=20).status_code == 200
    assert "Traceback" not in stack.web.log() and "Traceback" not in stack.worker.log()
