"""Signing in: redirect to the upstream IdP and back (``/auth/callback``), or the development login."""

from __future__ import annotations

import logging
import re

from urllib.parse import unquote, urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for

from workers import tasks

from ..background import dispatch
from ..extensions import runtime
from ..services.login import SESSION_KEY, SignedIn
from .errors import ServiceUnavailable, error_response, serves_pages

logger = logging.getLogger(__name__)

bp = serves_pages(Blueprint("login", __name__))

IDP_STATE_KEY = "idp_login"
#: Set when the IdP refused a sign-in begun by the authorization endpoint, which then tells the client.
LOGIN_REFUSED_KEY = "idp_login_refused"
#: How long the web process waits for the worker's IdP code exchange.
EXCHANGE_TIMEOUT = 30


#: Where sign-in and sign-out go when ``next`` is missing or not a local path.
DEFAULT_NEXT = "/auth/device"
#: A local path as this issuer writes one: printable ASCII, no space, no backslash.
_LOCAL_PATH = re.compile(r"/[!-\[\]-~]*")


def safe_next(value: object) -> str:
    """``value`` if it is a path on this issuer, else :data:`DEFAULT_NEXT` (docs/security-web.md).

    Never an open redirect: browsers drop tabs and newlines from URLs and read ``\\`` as ``/``, so
    ``/\\evil``, ``/\\t/evil`` and ``//evil`` all leave the site; a CR/LF would break the header.
    Anything but printable ASCII, a scheme, a network location, a leading ``//`` or ``/\\``, or a
    dot segment (also percent-encoded, up to three times) falls back to the default page."""
    if not isinstance(value, str) or len(value) > 2048 or not _LOCAL_PATH.fullmatch(value):
        return DEFAULT_NEXT
    decoded = value
    for _ in range(3):  # a proxy or a framework in front may decode once more
        path = decoded.split("?", 1)[0]
        if not _LOCAL_PATH.fullmatch(path) or path.startswith("//") or {".", ".."} & set(path.split("/")):
            return DEFAULT_NEXT
        decoded = unquote(decoded)
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


def signed_in() -> SignedIn | None:
    return SignedIn.from_session(session.get(SESSION_KEY))


def require_login():
    """A redirect to sign in (coming back to this page), or None when signed in."""
    if signed_in() is not None:
        return None
    return redirect(url_for("oauth.login.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login():
    rt = runtime()
    target = safe_next(request.values.get("next"))
    if rt.idp is None:
        return _development_login(target)
    url, state = rt.idp.begin_login(rt.settings.issuer_address + url_for("oauth.login.callback"),
                                    fresh=request.values.get("fresh") == "1")
    session[IDP_STATE_KEY] = {"state": state.to_dict(), "next": target}
    return redirect(url)


def _development_login(target: str):
    error = None
    if request.method == "POST":
        signed = runtime().logins.development_login(request.form.get("username", "")[:64],
                                                     request.form.get("password", "")[:256])
        if signed is not None:
            session.clear()
            session[SESSION_KEY] = signed.to_session()
            return redirect(target)
        error = "Unknown user or wrong password."
    status = 401 if error else 200
    return render_template("dev_login.html", next=target, error=error), status


@bp.get("/callback")
def callback():
    pending = session.pop(IDP_STATE_KEY, None)
    if not isinstance(pending, dict) or "state" not in pending:
        return error_response(400, "invalid_request",
                              "This sign-in link has expired or was already used. Please start again.")
    try:
        result = dispatch(tasks.exchange_idp_code, pending["state"], request.args.to_dict()).get(
            timeout=EXCHANGE_TIMEOUT, disable_sync_subtasks=False)
    except Exception as exc:  # broker down, worker gone or too slow: the user may retry
        logger.warning("IdP code exchange did not complete: %s", type(exc).__name__)
        raise ServiceUnavailable("the sign-in service") from None
    if not result.get("ok"):
        if result.get("error") == "unavailable":
            raise ServiceUnavailable(result.get("message", "the identity provider"))
        target = safe_next(pending.get("next"))
        if result.get("error") == "refused" and urlsplit(target).path == url_for("oauth.authorize.authorize"):
            # the user cancelled at the IdP: the client hears access_denied (RFC 6749 §4.1.2.1)
            session[LOGIN_REFUSED_KEY] = True
            return redirect(target)
        return error_response(400, "access_denied", f"Sign-in failed: {result.get('message')}")
    session[SESSION_KEY] = result["login"]
    return redirect(safe_next(pending.get("next")))


@bp.get("/logout")
def logout_form():
    """Signing out changes state, so it is a CSRF-protected POST; GET shows the button."""
    return render_template("logout.html", next=safe_next(request.args.get("next")) if "next" in request.args else "")


@bp.post("/logout")
def logout():
    session.clear()
    if request.form.get("next"):
        return redirect(safe_next(request.form["next"]))
    return render_template("message.html", title="Signed out", message="You are signed out of the token issuer.")
