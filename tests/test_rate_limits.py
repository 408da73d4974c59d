"""SPEC §8 / RFC 8628 §5.1: user-code entry and device polling are rate limited per address."""

from __future__ import annotations

from scitoken_issuer.app import RATE_LIMITS

from .conftest import basic_auth


def test_user_code_guessing_is_limited(client):
    """RFC 8628 §5.1: brute-forcing user codes on the verification page hits 429."""
    limit = int(RATE_LIMITS["oauth.device.verify"].split()[0])
    statuses = [client.get("/auth/device?user_code=BBBBB-BBBB" + "BCDFGHJKLM"[i % 10]).status_code
                for i in range(limit + 3)]
    assert statuses[:limit] == [400] * limit  # unknown codes: a readable page each time
    assert statuses[-1] == 429


def test_limits_are_per_app(tmp_path):
    """Each app has its own limiter (tests and several apps in one process never share counters)."""
    from .conftest import make_app
    first, second = make_app(tmp_path / "a"), make_app(tmp_path / "b")
    assert first.extensions["rate_limiter"] is not second.extensions["rate_limiter"]


def test_device_authorization_is_limited(client, make_client):
    device_client, secret = make_client(grant_types=["urn:ietf:params:oauth:grant-type:device_code"],
                                        admin=False, scope="openid")
    limit = int(RATE_LIMITS["oauth.device.device_authorization"].split()[0])
    responses = [client.post("/auth/device/code", data={"scope": "openid"},
                             headers=basic_auth(device_client.client_id, secret)) for _ in range(limit + 1)]
    assert responses[0].status_code == 200 and responses[-1].status_code == 429
    assert responses[-1].get_json()["error"] == "slow_down" and responses[-1].headers["Retry-After"]
