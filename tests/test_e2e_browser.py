"""The device flow (RFC 8628) with a real headless Chromium on the verification and consent pages.

Everything behind the browser is real too (see ``tests/support/e2e.py``): the upstream OIDC provider
whose login and consent pages Chromium fills in, PostgreSQL, Redis, slapd, gunicorn and a Celery
worker. The device itself is played by ``requests``, polling the token endpoint as RFC 8628 §3.4
asks. ``test_e2e_flows.py`` covers the same flow with a scripted ``requests`` browser.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import jwt
import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .support.e2e import CLIENT_ID, CLIENT_SECRET, DEVICE_GRANT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Coming back from the IdP waits for the worker's code exchange: more than expect()'s 5 s default.
NAVIGATION_TIMEOUT_MS = 30_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture
def storage_tree(tmp_path: Path) -> Path:
    """A site filesystem: /atlas is readable through group atlas (5001), /private is uid 10002's alone."""
    root = tmp_path / "storage"
    (root / "atlas" / "run1").mkdir(parents=True)
    (root / "private").mkdir()
    os.chmod(root, 0o755)
    for directory in (root / "atlas", root / "atlas" / "run1"):
        os.chown(directory, 0, 5001)
        os.chmod(directory, 0o2775)
    os.chown(root / "private", 10002, 10002)
    os.chmod(root / "private", 0o700)
    return root


@pytest.fixture
def stack(issuer_stack, storage_tree):
    return issuer_stack(POSIX_PATH=str(storage_tree), DEVICE_CODE_LIFETIME=600)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never ``playwright install``)."""
    with sync_playwright() as playwright:
        with playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True) as browser:
            yield browser


@dataclass
class Browsing:
    """One fresh browser profile (no cookies), every server error any page in it answered, and
    every message the browser logged about a refused resource (our CSP: docs/security-web.md)."""
    page: Page
    server_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@pytest.fixture
def browsing(chromium) -> Iterator[Browsing]:
    with chromium.new_context() as context:
        context.set_default_timeout(NAVIGATION_TIMEOUT_MS)
        browsing = Browsing(context.new_page())
        browsing.page.on("response", lambda response: browsing.server_errors.append(
            f"{response.status} {response.request.method} {response.url}") if response.status >= 500 else None)
        browsing.page.on("console", lambda message: browsing.refused.append(message.text)
                         if "Content Security Policy" in message.text else None)
        yield browsing


def device_start(stack, scope: str) -> dict:
    """RFC 8628 §3.1-3.2: the device asks for a device code and a user code."""
    response = requests.post(f"{stack.url}/auth/device/code", data={"scope": scope},
                             auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def poll_for_outcome(stack, start: dict, timeout: float = 60) -> requests.Response:
    """RFC 8628 §3.4-3.5: poll at ``interval`` seconds, 5 s slower after each ``slow_down``."""
    interval = start.get("interval", 5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        response = stack.token({"grant_type": DEVICE_GRANT, "device_code": start["device_code"]})
        error = response.json().get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            return response
    raise AssertionError("the device flow did not complete")


def sign_in_at_idp(page: Page, stack, login: str = "alice", password: str = "alice-idp-password") -> None:
    """Fill the IdP's login form, pass its consent page, and wait to be back on the issuer's page."""
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill(password)
    page.locator('form:has(input[name="prompt"][value="login"]) button[type="submit"]').click()
    page.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click()
    expect(page).to_have_url(re.compile("^" + re.escape(f"{stack.url}/auth/device")),
                             timeout=NAVIGATION_TIMEOUT_MS)


def test_device_flow_approved_in_chromium(stack, browsing, tmp_path):
    """RFC 8628 §3.3: the user opens ``verification_uri``, types the code (lower case, no dash),
    signs in at the IdP, sees the client and every scope, approves; the device gets its tokens."""
    scope = "openid offline_access storage.read:/atlas"
    start = device_start(stack, scope)
    page = browsing.page

    page.goto(start["verification_uri"])
    page.locator('input[name="user_code"]').fill(start["user_code"].replace("-", "").lower())
    page.locator("#continue").click()
    sign_in_at_idp(page, stack)

    expect(page.locator("h1")).to_contain_text("Command line tool")
    expect(page.locator(".scope")).to_have_count(len(scope.split()))
    assert sorted(page.locator(".scope").all_text_contents()) == sorted(scope.split())
    expect(page.locator("#refusal")).to_have_count(0)
    # the stylesheet is a file of the issuer's (no inline style for the CSP to refuse); read the
    # style once the page has loaded (the stylesheet comes over a connection of its own)
    page.wait_for_load_state("load")
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "640px"
    screenshot = page.screenshot(path=tmp_path / "device-consent.png", full_page=True)
    assert screenshot.startswith(PNG_SIGNATURE)
    assert (tmp_path / "device-consent.png").read_bytes().startswith(PNG_SIGNATURE)

    page.locator("#approve").click()
    expect(page.locator("#outcome")).to_contain_text("approved")

    response = poll_for_outcome(stack, start)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["refresh_token"]  # offline_access
    assert not browsing.refused
    claims = jwt.decode(tokens["access_token"], jwt.PyJWKClient(f"{stack.url}/auth/certs")
                        .get_signing_key_from_jwt(tokens["access_token"]).key,
                        algorithms=["RS256", "ES256"], audience="https://wlcg.cern.ch/jwt/v1/any", issuer=stack.url)
    assert claims["sub"] == "alice" and "storage.read:/atlas" in claims["scope"].split()
    assert not browsing.server_errors


def test_device_flow_denied_from_verification_uri_complete(stack, browsing):
    """RFC 8628 §3.3.1 and §3.5: the link with the code in it; the user denies; access_denied."""
    start = device_start(stack, "openid offline_access storage.read:/atlas")
    page = browsing.page

    page.goto(start["verification_uri_complete"])
    sign_in_at_idp(page, stack)
    expect(page.locator("h1")).to_contain_text("Command line tool")
    page.locator("#deny").click()
    expect(page.locator("#outcome")).to_contain_text("denied")

    response = poll_for_outcome(stack, start)
    assert response.status_code == 400 and response.json()["error"] == "access_denied", response.text
    assert not browsing.server_errors


def test_device_flow_refusal_shown_and_sent_to_the_device(stack, browsing):
    """RFC 6749 §5.2 invalid_scope (docs/scopes.md, "Errors"): alice cannot read /private (0700,
    uid 10002); the consent page says why, and the device hears which scope in ``error_description``."""
    scope = "storage.read:/private"
    start = device_start(stack, scope)
    page = browsing.page

    page.goto(start["verification_uri_complete"])
    sign_in_at_idp(page, stack)
    expect(page.locator("#refusal")).to_contain_text(scope)
    expect(page.locator("#approve")).to_have_count(0)
    page.locator("#return").click()
    expect(page.locator("#outcome")).to_be_visible()

    response = poll_for_outcome(stack, start)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_scope"
    assert scope in response.json()["error_description"]
    assert not browsing.server_errors


def test_second_tab_reload_and_back_after_approval_keep_the_first_decision(stack, browsing):
    """RFC 8628 §3.3: one decision per code. After Approve in one tab, Deny in a second tab opened
    before it, a reload of the result (the browser posts the form again) and the back button
    all say the request was already approved — the second tab used to say "You denied" and race
    the approval through a second worker task, the reload that the code was not valid — and the
    device gets its tokens."""
    start = device_start(stack, "openid offline_access storage.read:/atlas")
    page = browsing.page
    page.goto(start["verification_uri_complete"])
    sign_in_at_idp(page, stack)
    second = page.context.new_page()
    second.goto(start["verification_uri_complete"])
    expect(second.locator("#deny")).to_be_visible()

    page.locator("#approve").click()
    expect(page.locator("#outcome")).to_contain_text("You approved")
    second.locator("#deny").click()
    expect(second.locator("#outcome")).to_contain_text("You already approved")
    page.reload()
    expect(page.locator("#outcome")).to_contain_text("You already approved")
    page.go_back()
    expect(page.locator("#outcome")).to_contain_text("You already approved")
    expect(page.locator("#approve")).to_have_count(0)

    response = poll_for_outcome(stack, start)
    assert response.status_code == 200, response.text
    assert not browsing.server_errors


def test_a_wrong_code_is_announced_on_its_field(stack, browsing):
    """WCAG 3.3.1 (error identification): after a wrong code the field itself says so — a screen
    reader on the focused field heard only "Code", the error sat in a paragraph apart."""
    page = browsing.page
    page.goto(f"{stack.url}/auth/device")
    expect(page.get_by_label("Code")).not_to_have_attribute("aria-invalid", "true")
    page.get_by_label("Code").fill("bbbbb-bbbbb")
    page.locator("#continue").click()
    field = page.get_by_label("Code")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile("not valid or has expired"))
    expect(field).to_have_value("bbbbb-bbbbb")
    assert page.evaluate("document.documentElement.lang") == "en" and page.title()
    assert not browsing.server_errors and not browsing.refused


def test_issuer_pages_cannot_be_framed(stack, browsing):
    """CSP ``frame-ancestors 'none'`` (clickjacking): another page's iframe of the verification
    page stays empty in Chromium, and the browser says why."""
    page = browsing.page
    page.set_content(f'<iframe id="victim" src="{stack.url}/auth/device"></iframe>')
    page.wait_for_function("() => window.frames.length === 1")
    frame = page.frames[1]
    page.wait_for_function(f"() => document.getElementById('victim').src.startsWith('{stack.url}')")
    frame.wait_for_load_state()
    for _ in range(100):  # Playwright delivers console events while it waits
        if any("frame-ancestors" in message for message in browsing.refused):
            break
        page.wait_for_timeout(50)
    assert any("frame-ancestors" in message for message in browsing.refused), browsing.refused
    assert 'name="user_code"' not in frame.content()
