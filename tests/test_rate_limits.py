"""Failures are counted, never work (docs/security-web.md): RFC 8628 §5.1 user-code guessing per
address; failed client authentication (RFC 6749 §2.3) per address and per client id; the client
address from ``TRUSTED_PROXIES`` hops only. Over a limit: 429 (RFC 6585 §4) with Retry-After."""

from __future__ import annotations

import base64
import re
import time

import pytest
from flask import request

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.failure_limits import TRUST_SECONDS, FailureLimits, address_key

from .conftest import basic_auth, make_app
from .support.processes import wait_until
from .test_policy import write_users

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CC = {"grant_type": "client_credentials"}


def at(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def register(app, **params) -> tuple[str, str]:
    params.setdefault("client_name", "service")
    params.setdefault("grant_types", ["client_credentials"])
    params.setdefault("scope", "compute.read")
    with app.app_context():
        registration = runtime().clients.register(params, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


def start_device(app, client_id: str, secret: str) -> str:
    response = app.test_client().post("/auth/device/code", data={"scope": "openid"},
                                      headers=basic_auth(client_id, secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["user_code"]


def assert_too_many(response) -> None:
    """RFC 6585 §4 429 + Retry-After; the OAuth error ``slow_down`` (RFC 8628 §3.5), no-store."""
    assert response.status_code == 429, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    assert response.get_json()["error"] == "slow_down" and response.get_json()["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, DEV_USERS_FILE=write_users(tmp_path / "users.json"))
    yield app
    with app.app_context():
        db.engine.dispose()


def test_wrong_user_codes_are_limited_per_address(tmp_path):
    """RFC 8628 §5.1: the 6th wrong code from one address within the window is a 429 page, before
    any look-up (a right code too); another address is not affected."""
    app = make_app(tmp_path, FAILED_USER_CODE_LIMIT="5/minute")
    client = app.test_client()
    statuses = [client.get(f"/auth/device?user_code=BBBBB-BBBB{c}", **at("192.0.2.7")).status_code for c in "BCDFG"]
    assert statuses == [400] * 5
    limited = client.get("/auth/device?user_code=BBBBB-BBBBH", **at("192.0.2.7"))
    assert limited.status_code == 429 and limited.mimetype == "text/html"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "Too many wrong codes" in limited.get_data(as_text=True)
    device_client = register(app, grant_types=[DEVICE_GRANT], scope="openid")
    assert client.get(f"/auth/device?user_code={start_device(app, *device_client)}",
                      **at("192.0.2.7")).status_code == 429
    assert client.get("/auth/device?user_code=BBBBB-BBBBH", **at("192.0.2.8")).status_code == 400


def test_successful_device_page_views_and_approvals_are_never_limited(app):
    """A NAT full of researchers: 100 consent-page views and 100 approvals from one address, no 429
    (the default limit counts wrong codes only)."""
    client = app.test_client()
    device_client = register(app, grant_types=[DEVICE_GRANT], scope="openid")
    form = client.get("/auth/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True)).group(1)
    assert client.post("/auth/login", data={"username": "alice", "password": "pw", "csrf_token": token}).status_code == 302
    code = start_device(app, *device_client)
    views = [client.get(f"/auth/device?user_code={code}") for _ in range(100)]
    assert [view.status_code for view in views] == [200] * 100
    token = re.search(r'name="csrf_token" value="([^"]+)"', views[-1].get_data(as_text=True)).group(1)
    approvals = []
    for _ in range(100):
        code = start_device(app, *device_client)
        approvals.append(client.post("/auth/device", data={"user_code": code, "decision": "approve",
                                                           "csrf_token": token}).status_code)
    assert approvals == [200] * 100


def test_successful_client_credentials_are_never_limited(app):
    """A site service fetching tokens from one host: 700 tokens in a burst, none refused
    (the old per-address request limit answered 429 after 600 a minute)."""
    client = app.test_client()
    client_id, secret = register(app)
    statuses = {client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret)).status_code
                for _ in range(700)}
    assert statuses == {200}


def test_failed_client_auth_is_limited_per_client_id_from_any_address(tmp_path):
    """Guessing one client's secret from many addresses: after the limit every address gets 429,
    a right secret too — except from an address that already authenticated as that client, so an
    attacker cannot lock a working service out."""
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_CLIENT="5/minute")
    client = app.test_client()
    client_id, secret = register(app)
    assert client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret), **at("198.51.100.1")).status_code == 200
    wrong = [client.post("/auth/token", data=CC, headers=basic_auth(client_id, f"guess-{i}"),
                         **at(f"203.0.113.{i}")).status_code for i in range(5)]
    assert wrong == [401] * 5
    assert_too_many(client.post("/auth/token", data=CC, headers=basic_auth(client_id, "guess-6"), **at("203.0.113.99")))
    assert_too_many(client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret), **at("203.0.113.98")))
    assert client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret),
                       **at("198.51.100.1")).status_code == 200  # the service's own host
    other_id, other_secret = register(app)
    assert client.post("/auth/token", data=CC, headers=basic_auth(other_id, other_secret),
                       **at("203.0.113.98")).status_code == 200  # other clients are not affected


def mangled_basic_auth(client_id: str, secret: str) -> dict:
    """HTTP Basic credentials with a character outside the base64 alphabet, which authlib's
    lenient decoder drops: the request still authenticates as ``client_id``."""
    value = basic_auth(client_id, secret)["Authorization"].removeprefix("Basic ")
    return {"Authorization": f"Basic {value[:4]}!{value[4:]}"}


def test_per_client_limit_reads_the_client_id_as_authentication_does(tmp_path):
    """RFC 6749 §2.3.1 / docs/security-web.md: the per-client-id count keys on the client id the
    Basic header authenticates as. A header that authlib decodes but a strict base64 decoder
    refuses must not let guesses of one client's secret from many addresses go uncounted."""
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_CLIENT="5/minute")
    client = app.test_client()
    client_id, secret = register(app)
    assert client.post("/auth/token", data=CC, headers=mangled_basic_auth(client_id, secret),
                       **at("198.51.100.7")).status_code == 200  # the header does authenticate
    wrong = [client.post("/auth/token", data=CC, headers=mangled_basic_auth(client_id, f"guess-{i}"),
                         **at(f"203.0.113.{i}")).status_code for i in range(5)]
    assert wrong == [401] * 5
    assert_too_many(client.post("/auth/token", data=CC, headers=mangled_basic_auth(client_id, secret),
                                **at("203.0.113.99")))
    assert_too_many(client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret), **at("203.0.113.98")))


@pytest.mark.parametrize("decoy", ["own-client", "id-only", "unknown-id-only"])
def test_a_basic_header_beside_body_credentials_does_not_escape_the_per_client_count(tmp_path, decoy):
    """RFC 6749 §2.3 (one method per request) / docs/security-web.md: guessing a
    client_secret_post client's secret in the body, with a decoy Basic header that does not
    authenticate (the guesser's own client with a wrong secret, from addresses it authenticated
    from; or a client id without a secret), counted each failure against the decoy: twelve
    guesses from twelve addresses and then the right secret got a token under a per-client limit
    of 5. Now such a request is refused whatever the body holds, and the secret is never compared."""
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_CLIENT="5/minute")
    client = app.test_client()
    victim_id, victim_secret = register(app, token_endpoint_auth_method="client_secret_post")
    own_id, own_secret = register(app)
    decoys = {"own-client": basic_auth(own_id, "wrong"),
              "id-only": raw_basic_header(own_id.encode()),
              "unknown-id-only": raw_basic_header(b"anything")}
    addresses = [f"203.0.113.{i}" for i in range(12)]
    for address in addresses:  # the guesser's own client is known at each of its addresses
        assert client.post("/auth/token", data=CC, headers=basic_auth(own_id, own_secret), **at(address)).status_code == 200
    for i, address in enumerate(addresses):
        response = client.post("/auth/token", data={**CC, "client_id": victim_id, "client_secret": f"guess-{i}"},
                               headers=decoys[decoy], **at(address))
        assert response.get_json()["error"] in ("invalid_client", "slow_down")  # the decoy's own count may lock it
    right = client.post("/auth/token", data={**CC, "client_id": victim_id, "client_secret": victim_secret},
                        headers=decoys[decoy], **at(addresses[-1]))
    assert right.status_code in (401, 429) and "access_token" not in right.get_json(), right.get_data(as_text=True)
    assert client.post("/auth/token", data={**CC, "client_id": victim_id, "client_secret": victim_secret},
                       **at("198.51.100.9")).status_code == 200  # one method: the victim is unaffected


def test_an_address_cannot_be_made_known_to_a_client_it_did_not_authenticate_as(tmp_path):
    """docs/security-web.md: an address is exempt from a client's lock only after it
    authenticated as that client. A Basic header naming the victim without a secret, beside the
    guesser's own client_post credentials in the body, authenticated the guesser's client but
    marked the address known to the victim, whose locked secret could then be guessed from it."""
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_CLIENT="3/minute")
    client = app.test_client()
    victim_id, victim_secret = register(app)
    own_id, own_secret = register(app, token_endpoint_auth_method="client_secret_post")
    plant = client.post("/auth/token", data={**CC, "client_id": own_id, "client_secret": own_secret},
                        headers=raw_basic_header(victim_id.encode()), **at("198.51.100.20"))
    assert plant.status_code == 401, plant.get_data(as_text=True)
    for i in range(3):
        client.post("/auth/token", data=CC, headers=basic_auth(victim_id, f"guess-{i}"), **at(f"203.0.113.{i}"))
    assert_too_many(client.post("/auth/token", data=CC, headers=basic_auth(victim_id, victim_secret),
                                **at("198.51.100.20")))


def raw_basic_header(credentials: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


@pytest.mark.parametrize("endpoint", ["/auth/token", "/auth/introspect", "/auth/revoke", "/auth/device/code"])
def test_failed_client_auth_is_limited_per_address(tmp_path, endpoint):
    """One address trying many client ids (or secrets): 429 after the limit at every endpoint that
    authenticates clients; failures at all of them count together; other addresses go on."""
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_ADDRESS="4/minute")
    client = app.test_client()
    data = {"token": "x", **CC}
    failures = [client.post(path, data=data, headers=basic_auth(f"nobody-{i}", "s"), **at("192.0.2.50")).status_code
                for i, path in enumerate(["/auth/token", "/auth/introspect", "/auth/revoke", "/auth/device/code"])]
    assert failures == [401] * 4
    client_id, secret = register(app, grant_types=["client_credentials", DEVICE_GRANT], scope="openid compute.read")
    assert_too_many(client.post(endpoint, data=data, headers=basic_auth(client_id, secret), **at("192.0.2.50")))
    assert client.post(endpoint, data=data, headers=basic_auth("nobody", "s"), **at("192.0.2.51")).status_code == 401


def test_malformed_credentials_count_as_failures(tmp_path):
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_ADDRESS="2/minute")
    client = app.test_client()
    for header in ("Basic !!!", "Basic "):
        assert client.post("/auth/token", data=CC, headers={"Authorization": header}).status_code in (400, 401)
    assert_too_many(client.post("/auth/token", data=CC, headers={"Authorization": "Basic !!!"}))


def whoami(app):
    app.add_url_rule("/test-whoami", "test_whoami", lambda: {"address": request.remote_addr, "scheme": request.scheme})
    return app


def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path):
    """TRUSTED_PROXIES=0: anyone can send X-Forwarded-For/-Proto; they change neither the
    address that is counted nor the scheme."""
    app = whoami(make_app(tmp_path, FAILED_AUTH_LIMIT_ADDRESS="3/minute"))
    client = app.test_client()
    seen = client.get("/test-whoami", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"},
                      **at("10.0.0.1")).get_json()
    assert seen == {"address": "10.0.0.1", "scheme": "http"}
    for i in range(3):
        client.post("/auth/token", data=CC, headers={**basic_auth("x", "y"), "X-Forwarded-For": f"1.2.3.{i}"},
                    **at("10.0.0.1"))
    assert_too_many(client.post("/auth/token", data=CC, headers={**basic_auth("x", "y"),
                                                                "X-Forwarded-For": "5.6.7.8"}, **at("10.0.0.1")))


def test_forwarded_for_is_the_key_behind_one_trusted_proxy(tmp_path):
    """TRUSTED_PROXIES=1: the address the proxy appended is counted (its last X-Forwarded-For
    entry; what the client put before it is ignored), so users behind one proxy don't share a bucket."""
    app = whoami(make_app(tmp_path, TRUSTED_PROXIES=1, FAILED_AUTH_LIMIT_ADDRESS="3/minute"))
    client = app.test_client()
    seen = client.get("/test-whoami", headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4", "X-Forwarded-Proto": "https"},
                      **at("10.0.0.1")).get_json()
    assert seen == {"address": "1.2.3.4", "scheme": "https"}
    for spoof in ("7.7.7.1", "7.7.7.2", "7.7.7.3"):
        client.post("/auth/token", data=CC, headers={**basic_auth("x", "y"), "X-Forwarded-For": f"{spoof}, 1.2.3.4"},
                    **at("10.0.0.1"))
    assert_too_many(client.post("/auth/token", data=CC, headers={**basic_auth("x", "y"), "X-Forwarded-For": "1.2.3.4"},
                                **at("10.0.0.1")))
    assert client.post("/auth/token", data=CC, headers={**basic_auth("x", "y"), "X-Forwarded-For": "5.6.7.8"},
                       **at("10.0.0.1")).status_code == 401


def test_limits_are_per_app(tmp_path):
    """Each app has its own counters (several apps in one process never share them)."""
    first = make_app(tmp_path / "a", FAILED_AUTH_LIMIT_ADDRESS="1/minute")
    second = make_app(tmp_path / "b", FAILED_AUTH_LIMIT_ADDRESS="1/minute")
    assert first.extensions["failure_limits"] is not second.extensions["failure_limits"]
    first.test_client().post("/auth/token", data=CC, headers=basic_auth("x", "y"))
    assert first.test_client().post("/auth/token", data=CC, headers=basic_auth("x", "y")).status_code == 429
    assert second.test_client().post("/auth/token", data=CC, headers=basic_auth("x", "y")).status_code == 401


def test_ipv6_addresses_count_by_prefix():
    """One IPv6 host holds a /64: its addresses share one key; IPv4-mapped addresses are IPv4."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("not an address") == address_key(None) == "unknown"


def test_limit_off_disables_a_rule(tmp_path):
    app = make_app(tmp_path, FAILED_AUTH_LIMIT_ADDRESS="off", FAILED_AUTH_LIMIT_CLIENT="off")
    client = app.test_client()
    assert {client.post("/auth/token", data=CC, headers=basic_auth("x", "y")).status_code for _ in range(30)} == {401}


def test_unreachable_counter_store_does_not_block(free_redis_url):
    """Redis down: failures are not counted and nobody is blocked (logged), never a 500."""
    limits = FailureLimits(free_redis_url, {"rule": "1/minute"})
    limits.failed("rule", "k")
    assert limits.retry_after("rule", "k") is None
    assert limits.known_client_address("c", "a") is False


@pytest.fixture
def free_redis_url():
    from .support.processes import free_port
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.e2e
def test_failure_counters_are_shared_by_every_web_process(issuer_stack, tmp_path):
    """Two gunicorn masters (two workers each, the Procfile's config) on one Redis: 100 successful
    client-credentials tokens from one address in parallel, none refused; failures alternating
    between the servers add up in Redis, so within TRUST_SECONDS of the 10th both refuse with 429."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    import redis
    import requests

    from .support.e2e import Stack
    from .support.processes import free_port

    service = {"client_id": "site-service", "client_secret": "site-service-secret-0123456789abcdef-01",
               "client_name": "Site service", "grant_types": ["client_credentials"], "scope": "compute.read"}
    stack = issuer_stack(worker=False, STATIC_CLIENTS=json.dumps([service]), FAILED_AUTH_LIMIT_ADDRESS="10/minute",
                         FAILED_AUTH_LIMIT_CLIENT="off")
    port = free_port()
    second = Stack(url=f"http://127.0.0.1:{port}", env=stack.env, log_dir=tmp_path, idp=stack.idp, port=port)
    second.start_web()
    urls = [f"{stack.url}/auth/token", f"{second.url}/auth/token"]
    good = (service["client_id"], service["client_secret"])

    def token(index: int, auth=good) -> int:
        return requests.post(urls[index % 2], data=CC, auth=auth, timeout=30).status_code
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(token, range(100)))
        print(f"100 client-credentials tokens through 2 servers in {time.monotonic() - started:.2f} s")
        assert set(statuses) == {200}
        failures = [token(i, (service["client_id"], f"wrong-{i}")) for i in range(10)]
        assert failures == [401] * 10
        # a worker whose last read of the flags is under TRUST_SECONDS old may let one attempt
        # through, counts it and locks too; once that read has expired, every worker refuses
        wrong = (service["client_id"], "wrong")
        assert {token(i, wrong) for i in range(4)} <= {401, 429}
        time.sleep(TRUST_SECONDS)
        assert [token(i, wrong) for i in range(8)] == [429] * 8
        keys = redis.Redis.from_url(stack.env["REDIS_URL"]).keys("*client-auth-by-address*")
        assert keys, "the failure counter lives in Redis"
    finally:
        second.stop()


def test_successes_read_the_flags_at_most_once_a_second(tmp_path, redis_url):
    """docs/security-web.md: a client that authenticates costs the failure limits one MGET of its
    lock flags and known address, trusted for a second: a burst of successes sends Redis at most
    that read, never a counter or a window script; a failure is counted in Redis at once."""
    import redis as redis_lib

    app = make_app(tmp_path, REDIS_URL=redis_url)
    client_id, secret = register(app)
    client = app.test_client()
    assert client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret)).status_code == 200  # remembered
    server = redis_lib.Redis.from_url(redis_url)

    def calls() -> dict[str, int]:
        return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in server.info("commandstats").items()}

    before, started = calls(), time.monotonic()
    for _ in range(20):
        assert client.post("/auth/token", data=CC, headers=basic_auth(client_id, secret)).status_code == 200
    after, elapsed = calls(), time.monotonic() - started
    grown = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    grown.pop("info", None)
    grown.pop("get", None)  # the shared-state version while a subscription starts (docs/revocation.md)
    assert set(grown) <= {"mget"} and grown.get("mget", 0) <= 1 + int(elapsed / TRUST_SECONDS)
    assert client.post("/auth/token", data=CC, headers=basic_auth(client_id, "wrong")).status_code == 401
    assert sum(calls().values()) - sum(after.values()) > 2  # the failure counted in its window
    with app.app_context():
        db.engine.dispose()


def test_a_lock_set_by_another_process_refuses_successes_within_a_second(tmp_path, redis_url):
    """docs/security-web.md: two processes on one Redis. One trusts its last read of the flags for
    TRUST_SECONDS; the other locks the address; the first refuses even a correct secret from it
    within that bound (429), and its own failures see the lock at once."""
    first = make_app(tmp_path / "a", REDIS_URL=redis_url, FAILED_AUTH_LIMIT_ADDRESS="3/minute")
    second = make_app(tmp_path / "b", REDIS_URL=redis_url, FAILED_AUTH_LIMIT_ADDRESS="3/minute",
                      DATABASE_URL=first.config["SQLALCHEMY_DATABASE_URI"])
    client_id, secret = register(first)
    good, here = basic_auth(client_id, secret), at("192.0.2.7")
    assert first.test_client().post("/auth/token", data=CC, headers=good, **here).status_code == 200
    statuses = [second.test_client().post("/auth/token", data=CC, headers=basic_auth(client_id, "no"), **here).status_code
                for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    locked_at = time.monotonic()
    wait_until(lambda: first.test_client().post("/auth/token", data=CC, headers=good, **here).status_code == 429,
               5, "the lock to reach the other process")
    assert time.monotonic() - locked_at <= TRUST_SECONDS + 0.5
    for app in (first, second):
        with app.app_context():
            db.engine.dispose()
