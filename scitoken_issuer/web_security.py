"""Browser-facing protections: trusted proxies, security headers, cross-site form refusal.

The rules and the reasons for each choice are in docs/security-web.md.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .settings import Settings

#: Every HTML page: only this issuer's own files, never framed (clickjacking), no <base>/plugins;
#: never stored (each page is one user's, with its CSRF token; the back button asks again, so a
#: consent page whose request was decided since is not shown with its buttons).
#: No ``form-action``: Chrome applies it to the redirects after a form post, and the consent form
#: ends in a redirect to the client's ``redirect_uri`` (another origin).
CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Cache-Control": "no-store",
}
#: What Fetch Metadata (``Sec-Fetch-Site``) says of a form post this issuer's own page made.
SAME_SITE_VALUES = ("same-origin", "none")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def init_proxies(app: Flask, settings: Settings) -> None:
    """Trust ``X-Forwarded-For/-Proto/-Host/-Port`` from exactly ``TRUSTED_PROXIES`` hops.

    With 0 (the default) the headers are ignored: the client address is the peer's, which is the
    key of the failure limits (docs/security-web.md)."""
    hops = settings.trusted_proxies
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)


def init_browser_security(app: Flask, settings: Settings) -> None:
    """Security headers on every response and the cross-site check of browser form posts.

    ``Referrer-Policy: no-referrer`` makes browsers send neither ``Referer`` nor a real ``Origin``
    (``Origin: null``) with our own form posts, so flask-wtf's https Referer check is replaced by:
    the session-bound CSRF token, a SameSite=Lax ``__Host-`` session cookie, and Fetch Metadata."""
    from .blueprints.errors import error_response, is_browser_request
    https = settings.issuer_address.startswith("https://")
    app.config["WTF_CSRF_SSL_STRICT"] = False
    if https:  # Secure, Path=/, no Domain: no sibling host or plain-http page can plant one
        app.config["SESSION_COOKIE_NAME"] = "__Host-session"
    parts = urlsplit(settings.issuer_address)
    own_origin = f"{parts.scheme}://{parts.netloc}".lower()

    @app.before_request
    def refuse_cross_site_forms():
        if request.method in SAFE_METHODS or not is_browser_request():
            return None
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if (site is not None and site not in SAME_SITE_VALUES) or \
                (origin is not None and origin != "null" and origin.lower() != own_origin):
            return error_response(403, "access_denied",
                                  "This form was sent from another site; open the issuer's page and try again.")
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            for name, value in HTML_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

