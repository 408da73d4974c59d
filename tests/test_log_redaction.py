"""No client secret, token, code or user code in any log line (docs/security-web.md).

Unit tests of the filter, then every flow run against real gunicorn (the Procfile's config) and
a real Celery worker, with every issued secret collected and searched for in both logs (the
access log included).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from scitoken_issuer.log_redaction import MASK, RedactingFilter, redact
from tests.support.e2e import CLIENT_ID, CLIENT_REDIRECT, CLIENT_SECRET, DEVICE_GRANT, PUBLIC_CLIENT_ID, csrf_token
from tests.support.upstream_idp import idp_login

from .test_e2e_flows import authorize_url, pkce, poll_until, storage_tree  # noqa: F401  (a fixture)

SERVICE_ID = "site-service"
SERVICE_SECRET = "site-service-secret-0123456789abcdef-0123456789"


@pytest.mark.parametrize("line, secret", [
    ('127.0.0.1 - - "GET /auth/callback?code=IDPCODE123&state=ST4TE HTTP/1.1" 302', "IDPCODE123"),
    ('"GET /auth/device?user_code=WDJBM-JHTCK HTTP/1.1" 200', "WDJBM-JHTCK"),
    ('"GET /auth/login?next=%2Fauth%2Fdevice%3Fuser_code%3DWDJBMJHTCK HTTP/1.1"', "WDJBMJHTCK"),
    ('"https://client.example/cb?state=s&code=C0DE5ECRET" "Mozilla"', "C0DE5ECRET"),
    ("Authorization: Basic Y2xpOnNlY3JldA==", "Y2xpOnNlY3JldA"),
    ("Authorization: Bearer opaque-token.value_1", "opaque-token.value_1"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl seen", "eyJzdWIiOiJhbGljZSJ9"),
    ('{"refresh_token": "rt-secret-value", "scope": "openid"}', "rt-secret-value"),
    ("client_secret=hunter2hunter2&grant_type=client_credentials", "hunter2hunter2"),
    ("device_code: dc-secret-value", "dc-secret-value"),
    # the case-blind patterns match these spellings, so the words that let them run must too
    ("client_\u017fecret: long-s-secret", "long-s-secret"),
    ("to\u212aen: kelvin-sign-secret", "kelvin-sign-secret"),
    ("Authorization: BA\u017fIC Y2xpOnNlY3JldA==", "Y2xpOnNlY3JldA"),
])
def test_redact_masks_secret_values(line, secret):
    masked = redact(line)
    assert secret not in masked and MASK in masked


def test_every_secret_field_name_holds_a_word_that_lets_its_pattern_run():
    """docs/security-web.md: the secret-field pattern runs only on lines holding one of
    ``_SECRET_WORDS``; a name added to the pattern without such a word would never be masked."""
    import re as regex

    from scitoken_issuer import log_redaction

    names = regex.search(r"\(\?:([^)]*)\)", log_redaction._SECRET_FIELD.pattern).group(1).split("|")
    assert len(names) > 10
    assert [name for name in names if not any(word in name for word in log_redaction._SECRET_WORDS)] == []


def test_redact_keeps_what_operators_need():
    line = '192.0.2.1 - cli-tool "POST /auth/token HTTP/1.1" 200 812 "-" "curl/8"'
    assert redact(line) == line
    assert redact('{"event": "issue", "sub": "alice", "client_id": "cli"}') == \
        '{"event": "issue", "sub": "alice", "client_id": "cli"}'


def test_filter_renders_args_and_tracebacks():
    """The filter sees the final text: %-args and exception text are masked too."""
    record = logging.LogRecord("scitoken_issuer.x", logging.INFO, __file__, 1, "callback %s", ("/cb?code=abc123",), None)
    try:
        raise ValueError("refresh_token=rt-in-traceback")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert record.getMessage() == f"callback /cb?code={MASK}"
    assert "rt-in-traceback" not in record.exc_text


def static_clients() -> str:
    return json.dumps([
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "client_name": "Command line tool",
         "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT], "redirect_uris": [CLIENT_REDIRECT]},
        {"client_id": PUBLIC_CLIENT_ID, "client_name": "Browser app", "token_endpoint_auth_method": "none",
         "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [CLIENT_REDIRECT]},
        {"client_id": SERVICE_ID, "client_secret": SERVICE_SECRET, "client_name": "Site service",
         "grant_types": ["client_credentials"], "scope": "compute.read"},
    ])


def through_idp(stack, http: requests.Session, url: str, found: list[str]) -> requests.Response:
    """Sign in at the real IdP; the IdP's code and state on the way back are secrets too."""
    back = idp_login(http, url, "alice", "alice-idp-password")
    callback = back.headers["Location"]
    query = parse_qs(urlsplit(callback).query)
    found += [query["code"][0], query["state"][0]]
    signed = http.get(callback, allow_redirects=False)
    assert signed.status_code == 302, signed.text[:500]
    return http.get(urljoin(stack.url, signed.headers["Location"]), allow_redirects=False)


@pytest.mark.e2e
def test_no_secret_in_any_log_line(issuer_stack, storage_tree):  # noqa: F811
    """Device flow (user code in the URL), code flow, refresh, client credentials, introspection,
    revocation and failed authentications against gunicorn + a Celery worker: neither the access
    log nor the app's or the worker's log lines hold any secret that was issued or presented."""
    stack = issuer_stack(POSIX_PATH=str(storage_tree), STATIC_CLIENTS=static_clients(), LOG_LEVEL="DEBUG")
    found = [CLIENT_SECRET, SERVICE_SECRET, stack.env["SECRET_KEY"], stack.env["IDP_CLIENT_SECRET"]]
    http = stack.http()

    # RFC 8628: the user code travels in the URL (verification_uri_complete) and through sign-in
    start = requests.post(f"{stack.url}/auth/device/code", data={"scope": "openid offline_access storage.read:/atlas"},
                          auth=(CLIENT_ID, CLIENT_SECRET), timeout=10).json()
    user_code = start["user_code"]
    found += [start["device_code"], user_code, user_code.replace("-", "")]
    consent = through_idp(stack, http, start["verification_uri_complete"], found)
    assert consent.status_code == 200, consent.text[:500]
    approved = http.post(f"{stack.url}/auth/device", data={"user_code": user_code, "decision": "approve",
                                                           "csrf_token": csrf_token(consent.text)})
    assert approved.status_code == 200
    tokens = poll_until(stack, start["device_code"]).json()
    found += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]

    # RFC 6749 §6 refresh, §4.1 authorization code with PKCE (already signed in: straight to consent)
    refreshed = stack.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    found += [refreshed["access_token"], refreshed["refresh_token"]]
    verifier, challenge = pkce()
    consent = http.get(authorize_url(stack, "openid offline_access", challenge, state="st-logs"), allow_redirects=False)
    assert consent.status_code == 200, consent.text[:500]
    back = http.post(consent.url, data={"decision": "approve", "csrf_token": csrf_token(consent.text)},
                     allow_redirects=False)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    issued = stack.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CLIENT_REDIRECT,
                          "code_verifier": verifier}).json()
    found += [code, verifier, issued["access_token"], issued["refresh_token"], issued["id_token"]]
    assert requests.get(f"{stack.url}/auth/userinfo", headers={"Authorization": f"Bearer {issued['access_token']}"},
                        timeout=10).ok  # before the replay below revokes it
    assert stack.token({"grant_type": "authorization_code", "code": code, "redirect_uri": CLIENT_REDIRECT,
                        "code_verifier": verifier}).status_code == 400  # a replay: refused, logged, revokes its tokens

    # RFC 6749 §4.4, RFC 7662, RFC 7009, and credentials that fail
    service = stack.token({"grant_type": "client_credentials"}, client_id=SERVICE_ID, secret=SERVICE_SECRET).json()
    found.append(service["access_token"])
    for endpoint, token in (("introspect", service["access_token"]), ("revoke", refreshed["refresh_token"])):
        assert requests.post(f"{stack.url}/auth/{endpoint}", data={"token": token},
                             auth=(CLIENT_ID if endpoint == "revoke" else SERVICE_ID,
                                   CLIENT_SECRET if endpoint == "revoke" else SERVICE_SECRET), timeout=10).ok
    wrong_secret = "wrong-secret-0123456789abcdef"
    found.append(wrong_secret)
    assert stack.token({"grant_type": "client_credentials"}, client_id=SERVICE_ID, secret=wrong_secret).status_code == 401
    assert requests.get(f"{stack.url}/auth/device?user_code={user_code}&code={code}", timeout=10).status_code == 400

    stack.stop()  # flush and close every log
    web, worker = stack.web.log_path.read_text(), stack.worker.log_path.read_text()
    for secret in found:
        for name, text in (("web", web), ("worker", worker)):
            assert secret not in text, f"{name} log holds {secret[:12]}..."
    assert re.search(r'"GET /auth/callback\?code=\[redacted\]&state=\[redacted\]', web)  # the access log is on
    assert "GET /auth/device?user_code=[redacted]" in web
    assert '"event": "issue"' in web and "scitoken_issuer.audit" in web  # the app's audit lines reach the log
    assert "exchange_idp_code" in worker


def test_gunicorn_logger_masks_every_handler(capsys):
    """The Procfile's gunicorn logger: access lines, gunicorn's own lines and any other library's
    lines (through the root logger) are all masked."""
    from types import SimpleNamespace

    from gunicorn.config import Config

    from scitoken_issuer import gunicorn_conf

    cfg = Config()
    for name in ("accesslog", "logger_class", "secure_scheme_headers", "forwarded_allow_ips"):
        cfg.set(name, getattr(gunicorn_conf, name))
    log = cfg.logger_class(cfg)
    root = logging.getLogger()
    try:
        environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/auth/device?user_code=WDJBM-JHTCK", "SERVER_PROTOCOL": "HTTP/1.1",
                   "PATH_INFO": "/auth/device", "QUERY_STRING": "user_code=WDJBM-JHTCK", "REMOTE_ADDR": "192.0.2.1",
                   "HTTP_REFERER": "https://client.example/cb?code=C0DE5ECRET"}
        response = SimpleNamespace(status="200 OK", headers=[], sent=10)
        log.access(response, SimpleNamespace(headers=[]), environ, SimpleNamespace(seconds=0, microseconds=1000))
        log.error("bad request line GET /auth/callback?code=IDPCODE123")
        logging.getLogger("authlib.test").warning("refresh_token=%s", "rt-secret-value")
        out, err = capsys.readouterr()
    finally:  # leave no handler on a stream pytest is about to close
        for handler in [h for h in root.handlers if getattr(h, "_scitoken_issuer", False)]:
            root.removeHandler(handler)
        for logger in (log.error_log, log.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
    assert "GET /auth/device?user_code=[redacted] HTTP/1.1" in out and "cb?code=[redacted]" in out
    for secret in ("WDJBM-JHTCK", "C0DE5ECRET", "IDPCODE123", "rt-secret-value"):
        assert secret not in out + err
    assert "refresh_token=[redacted]" in err and "callback?code=[redacted]" in err
