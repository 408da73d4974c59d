"""``GET /auth/scopes``: which storage scopes the caller may ask for (docs/researchers.md).

An RFC 6750 protected resource: a bearer access token of this issuer carrying ``openid`` (in
the ``Authorization`` header) decides whose answer it is — the token's ``sub`` is the user, its
``client_id`` the client whose registered policy applies — and gets JSON. Without a token, a
browser signed in here gets the same listing as an HTML page, decided as for a client that
registered no scope (the default user policy, as ``check-scope`` without ``--client``); a browser
that is not signed in is sent to sign in; any other caller gets 401 with a ``Bearer`` challenge.
"""

from __future__ import annotations

from authlib.oauth2.rfc6750 import InvalidTokenError
from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from ..extensions import resource_protector, runtime
from ..services.policy import AnyClient
from ..services.scope_listing import ScopeLister, ScopeListing
from ..services.scopes import ScopeError
from .errors import error_response
from .login import signed_in

bp = Blueprint("scopes", __name__)


def _listing(username: str, client, page: bool = False) -> ScopeListing | tuple:
    """The listing for the query's ``path`` and ``depth``, or a 400 answer for bad ones (an HTML
    page for a browser's ``page``, RFC 6749 §5.2 JSON otherwise)."""
    rt = runtime()
    lister = ScopeLister(rt.policy, rt.settings.scopes_listing_depth, rt.settings.scopes_listing_max)
    path = request.args.get("path", "/")
    depth = request.args.get("depth")
    if depth is not None and not (depth.isdigit() and len(depth) <= 2):
        return _bad_query("depth must be a small non-negative integer", page)
    try:
        return lister.listing(rt.groups.get(username), username, client, path, None if depth is None else int(depth))
    except ScopeError as exc:
        return _bad_query(f"path: {exc}", page)


def _bad_query(description: str, page: bool):
    if not page:
        return error_response(400, "invalid_request", description)
    return render_template("error.html", status=400, error="invalid_request", description=(
        f"{description}. Change ?path= or ?depth= in the address, or open {url_for('oauth.scopes.scopes')} "
        "without them.")), 400, {"Cache-Control": "no-store"}


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]


@bp.get("/scopes")
def scopes():
    browser = signed_in()
    if browser is not None and "Authorization" not in request.headers:
        listing = _listing(browser.username, AnyClient(), page=_wants_html())
        if not isinstance(listing, ScopeListing):
            return listing
        if not _wants_html():
            return _json(listing)
        page = render_template("scopes.html", listing=listing, user=browser)
        return page, 200, {"Cache-Control": "no-store"}
    if "Authorization" not in request.headers and _wants_html():
        return redirect(url_for("oauth.login.login", next=request.full_path.rstrip("?")))
    protector = resource_protector()
    with protector.acquire("openid") as token:
        client = runtime().clients.get(token.client_id)
        if client is None:
            protector.raise_error_response(
                InvalidTokenError("the client this access token was issued to no longer exists"))
        listing = _listing(token.subject, client)
    return listing if not isinstance(listing, ScopeListing) else _json(listing)


def _json(listing: ScopeListing):
    response = jsonify(listing.as_json())
    response.headers["Cache-Control"] = "no-store"
    return response
