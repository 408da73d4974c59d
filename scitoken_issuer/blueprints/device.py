"""RFC 8628: the device authorization endpoint and the verification page people use."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from workers import tasks

from ..background import dispatch
from ..extensions import authorization_server, csrf, failure_limits, runtime
from ..services.device import format_user_code, normalize_user_code
from ..services.failure_limits import WRONG_USER_CODE, address_key
from .consent import consent_view
from .edge import commit_on_success
from .errors import error_response, serves_pages
from .login import require_login, signed_in

#: The verification page people use (HTML).
bp = serves_pages(Blueprint("device", __name__))
#: The device authorization endpoint devices call (JSON).
api = Blueprint("device_authorization", __name__)


@api.post("/device/code")
@csrf.exempt
@commit_on_success
def device_authorization():
    """RFC 8628 §3.1; the new row is announced to Redis once committed (:class:`DeviceFlow`)."""
    return authorization_server().create_endpoint_response("device_authorization")


def _code_form(error: str | None = None, status: int = 200, code: str = ""):
    return render_template("device_code.html", error=error, code=code), status


@bp.route("/device", methods=["GET", "POST"])
@commit_on_success
def verify():
    """Enter (or follow a link with) the user code, sign in, see what is asked, approve or deny."""
    typed = request.values.get("user_code")
    if typed is None:
        return _code_form()
    address = address_key(request.remote_addr)
    wait = failure_limits().retry_after(WRONG_USER_CODE, address)
    if wait is not None:  # RFC 8628 §5.1: guessing codes is stopped before any look-up
        return error_response(429, "slow_down", "Too many wrong codes were entered from your network. "
                              f"Please wait {wait} seconds, then try again.", {"Retry-After": str(wait)})
    user_code = normalize_user_code(typed)
    device = runtime().device
    row = device.unexpired_by_user_code(user_code) if user_code else None
    client = runtime().clients.get(row.client_id) if row is not None else None
    user = signed_in()
    accepted = device.accepted_decision(row) if client is not None else None
    if accepted is not None and user is not None and user.username == accepted[0]:
        return _decided(accepted, client)  # a reload, a double submit, the back button, another tab
    if client is None or accepted is not None:  # unknown, expired or decided, or its client was deleted since
        return _not_valid(address, typed)
    login_redirect = require_login()
    if login_redirect is not None:
        return login_redirect
    decision = request.form.get("decision") if request.method == "POST" else None
    if decision in ("approve", "deny"):  # recorded with the row, then decided by a worker (docs/flows.md)
        if not device.request_decision(row, user.username, user.identity_id, decision == "approve"):
            # another request of this code won: the first decision stands
            accepted = device.accepted_decision(row)
            if accepted is None or accepted[0] != user.username:
                return _not_valid(address, typed)
            return _decided(accepted, client)
        dispatch(tasks.complete_device_authorization, row.device_code_hash, user.username, user.identity_id,
                 decision == "approve")
        return render_template("device_done.html", approved=decision == "approve", client=client)
    scopes, refusal = consent_view(user.username, row.scope, client)
    return render_template("consent.html", client=client, user=user, scopes=scopes, refusal=refusal,
                           action=request.path, hidden=[("user_code", format_user_code(user_code))])


def _not_valid(address: str, typed: str):
    failure_limits().failed(WRONG_USER_CODE, address)
    return _code_form("That code is not valid or has expired. Check the code on your device and try again.",
                      400, typed[:32])


def _decided(accepted: tuple[str, bool], client):
    """The decision this user already made on this code, shown again: the first one stands."""
    return render_template("device_done.html", approved=accepted[1], client=client, again=True)
