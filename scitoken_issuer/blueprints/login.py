"""Signing in: redirect to the upstream IdP and back (``/auth/callback``), or the development login."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import unquote, urlsplit

from celery.exceptions import TimeoutError as ResultNotReady
from flask import Blueprint, current_app, redirect, render_template, request, session, url_for

from workers import tasks

from ..background import dispatch
from ..extensions import runtime
from ..services.login import SESSION_KEY, SignedIn
from .errors import ServiceUnavailable, error_response, serves_pages

logger = logging.getLogger(__name__)

bp = serves_pages(Blueprint("login", __name__))

IDP_STATE_KEY = "idp_login"
#: The IdP code exchange a browser is waiting for (its task id, where to go next, since when).
IDP_WAIT_KEY = "idp_login_wait"
#: Set when the IdP refused a sign-in begun by the authorization endpoint, which then tells the client.
LOGIN_REFUSED_KEY = "idp_login_refused"
#: How long a sign-in may wait, in all, for the worker's IdP code exchange before it is given up
#: (503: the user starts again). The web process itself waits at most FIRST_WAIT (the callback)
#: or NEXT_WAIT (each reload of the waiting page) of it, so a worker outage holds no web thread.
EXCHANGE_TIMEOUT = 30
FIRST_WAIT = 5
NEXT_WAIT = 1
#: Seconds between reloads of the waiting page (an HTML refresh: no script needed).
WAIT_REFRESH = 2


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
        return _start_again()
    try:
        exchange = dispatch(tasks.exchange_idp_code, pending["state"], request.args.to_dict())
    except Exception as exc:  # broker down: the user may retry
        logger.warning("IdP code exchange could not be sent: %s", type(exc).__name__)
        raise ServiceUnavailable("the sign-in service") from None
    return _finish_or_wait(exchange, pending.get("next"), time.time(), FIRST_WAIT)


@bp.get("/callback/wait")
def callback_wait():
    """The waiting page's reload (docs/flows.md, flow 1): the sign-in once the worker finished
    the IdP code exchange, the waiting page again while it may still, else 503."""
    waiting = session.get(IDP_WAIT_KEY)
    if not isinstance(waiting, dict) or not isinstance(waiting.get("task"), str):
        return _start_again()
    exchange = current_app.extensions["celery"].AsyncResult(waiting["task"])
    return _finish_or_wait(exchange, waiting.get("next"), float(waiting.get("since", 0)), NEXT_WAIT)


def _start_again():
    return error_response(400, "invalid_request",
                          "This sign-in link has expired or was already used. Please start again.")


def _finish_or_wait(exchange, next_page: str | None, since: float, wait: float):
    """The outcome of the IdP code exchange if the worker gives it within ``wait`` seconds; else
    a page that reloads until EXCHANGE_TIMEOUT has passed since the callback, then 503."""
    try:
        result = exchange.get(timeout=wait, disable_sync_subtasks=False)
    except ResultNotReady:
        if time.time() - since < EXCHANGE_TIMEOUT:
            session[IDP_WAIT_KEY] = {"task": exchange.id, "next": next_page, "since": since}
            return (render_template("signing_in.html", wait_url=url_for(".callback_wait"), refresh=WAIT_REFRESH),
                    202, {"Cache-Control": "no-store"})
        session.pop(IDP_WAIT_KEY, None)
        logger.warning("IdP code exchange did not complete within %s s", EXCHANGE_TIMEOUT)
        raise ServiceUnavailable("the sign-in service") from None
    except Exception as exc:  # result store down, the task failed in the worker: the user may retry
        session.pop(IDP_WAIT_KEY, None)
        logger.warning("IdP code exchange did not complete: %s", type(exc).__name__)
        raise ServiceUnavailable("the sign-in service") from None
    session.pop(IDP_WAIT_KEY, None)
    if not result.get("ok"):
        if result.get("error") == "unavailable":
            raise ServiceUnavailable(result.get("message", "the identity provider"))
        target = safe_next(next_page)
        if result.get("error") == "refused" and urlsplit(target).path == url_for("oauth.authorize.authorize"):
            # the user cancelled at the IdP: the client hears access_denied (RFC 6749 §4.1.2.1)
            session[LOGIN_REFUSED_KEY] = True
            return redirect(target)
        return error_response(400, "access_denied", f"Sign-in failed: {result.get('message')}")
    session[SESSION_KEY] = result["login"]
    return redirect(safe_next(next_page))


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
