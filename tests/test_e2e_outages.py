"""Outages mid-flight under the real process model (docs/errors.md, "A dependency that is down is a
503"): gunicorn as the Procfile runs it, a real Celery worker, Redis, PostgreSQL, slapd and the
node IdP; each test stops or kills one of them while a flow is under way and checks that what was
accepted before is still there once it is back."""

from __future__ import annotations

import os
import signal

import pytest

from .support.e2e import csrf_token
from .support.processes import wait_until
from .test_e2e_flows import device_poll, device_start, poll_until, sign_in_through_idp, storage_tree  # noqa: F401

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
