"""The authorization endpoint (RFC 6749 §3.1): sign in, consent, then a code for the client."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, redirect, render_template, request, session, url_for

from ..extensions import authorization_server
from ..oauth2.oidc import after_fresh_sign_in
from ..services.authorization import UserAuthorization
from .consent import consent_view
from .edge import commit_on_success
from .errors import error_response, serves_pages
from .login import LOGIN_REFUSED_KEY, require_login, signed_in

bp = serves_pages(Blueprint("authorize", __name__))


def _oauth_error(error: OAuth2Error):
    """Errors with a verified redirect URI go back to the client; others get a readable page.

    The redirect passes through the same ``after_create_authorization_response`` hook as every
    other authorization response, so it carries ``iss`` (RFC 9207 §2: error responses too)."""
    if getattr(error, "redirect_uri", None):
        server = authorization_server()
        response = server.handle_error_response(None, error)
        server.execute_hook("after_create_authorization_response", response)
        return response
    return error_response(error.status_code or 400, error.error, error.description or error.error)


@bp.route("/authorize", methods=["GET", "POST"])
@commit_on_success
def authorize():
    try:
        grant = authorization_server().get_consent_grant(end_user=signed_in())
    except OAuth2Error as error:
        return _oauth_error(error)
    login_redirect = require_login()
    if login_redirect is not None:
        if session.pop(LOGIN_REFUSED_KEY, False):  # the IdP refused the sign-in this request began
            return authorization_server().create_authorization_response(grant=grant, grant_user=None)
        return login_redirect
    if grant.prompt == "login":  # OIDC Core §3.1.2.1: prompt=login, or a sign-in older than max_age
        return redirect(url_for("oauth.login.login", next=after_fresh_sign_in(request.full_path), fresh=1))
    user = signed_in()
    client = grant.client
    if request.method == "GET":
        scopes, refusal = consent_view(user.username, grant.request.payload.scope, client)
        return render_template("consent.html", client=client, user=user, scopes=scopes, refusal=refusal,
                               action=request.full_path, hidden=[])
    grant_user = None
    if request.form.get("decision") == "approve":
        grant_user = UserAuthorization(subject=user.username, identity_id=user.identity_id,
                                       auth_time=user.auth_time, claims=user.claims)
    return authorization_server().create_authorization_response(grant=grant, grant_user=grant_user)
