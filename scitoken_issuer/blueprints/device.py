"""RFC 8628: the device authorization endpoint and the verification page people use."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..background import dispatch
from ..extensions import csrf, db, runtime
from ..oauth2.server import authorization
from ..services.device import format_user_code, normalize_user_code
from .consent import consent_view
from .edge import commit_on_success
from .login import require_login, signed_in

bp = Blueprint("device", __name__)

@bp.post("/device/code")
@csrf.exempt
def device_authorization():
    response = authorization.create_endpoint_response("device_authorization")
    if response.status_code == 200:
        db.session.commit()
        digest = runtime().secrets.hash(response.get_json()["device_code"])
        runtime().device.announce(runtime().device.decision(digest))
    else:
        db.session.rollback()
    return response


def _code_form(error: str | None = None, status: int = 200, code: str = ""):
    return render_template("device_code.html", error=error, code=code), status


@bp.route("/device", methods=["GET", "POST"])
@commit_on_success
def verify():
    """Enter (or follow a link with) the user code, sign in, see what is asked, approve or deny."""
    typed = request.values.get("user_code")
    if typed is None:
        return _code_form()
    user_code = normalize_user_code(typed)
    flow = runtime().device
    row = flow.pending_by_user_code(user_code) if user_code else None
    if row is None:
        return _code_form("That code is not valid or has expired. Check the code on your device and try again.",
                          400, typed[:32])
    login_redirect = require_login()
    if login_redirect is not None:
        return login_redirect
    user = signed_in()
    client = runtime().clients.get(row.client_id)
    decision = request.form.get("decision") if request.method == "POST" else None
    if decision in ("approve", "deny"):
        dispatch("complete_device_authorization", row.device_code_hash, user.username, user.identity_id,
                 decision == "approve")
        return render_template("device_done.html", approved=decision == "approve", client=client)
    scopes, refusal = consent_view(user.username, row.scope, client)
    return render_template("consent.html", client=client, user=user, scopes=scopes, refusal=refusal,
                           action=request.path, hidden=[("user_code", format_user_code(user_code))])
