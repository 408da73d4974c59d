"""The authorization server: authlib's Flask server with this issuer's clients, scopes and tokens."""

from __future__ import annotations

import logging

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, InvalidScopeError, \
    UnsupportedGrantTypeError, UnsupportedResponseTypeError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Response, g
from flask import request as flask_request
from werkzeug.exceptions import RequestEntityTooLarge

from ..extensions import db
from ..services.clients import ClientRegistry
from ..services.scopes import Scope, ScopeError, parse_scopes
from .client_auth_limits import limited_authentication
from .tokens import generate_token

logger = logging.getLogger(__name__)


def error_description(text: str, limit: int = 300) -> str:
    """``text`` as an RFC 6749 §5.2 ``error_description`` (%x20-21 / %x23-5B / %x5D-7E only);
    authlib raises ValueError (a 500) on anything else, and client input may hold anything."""
    safe = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else f"U+{ord(ch):04X}" for ch in text)
    return safe if len(safe) <= limit else safe[:limit] + "..."


def requested_scopes(scope: str | None) -> list[Scope]:
    """A request's ``scope`` parsed (docs/scopes.md), or RFC 6749 §5.2 ``invalid_scope`` saying
    what is malformed; every endpoint that reads ``scope`` goes through here."""
    try:
        return parse_scopes(scope or "")
    except ScopeError as exc:
        raise InvalidScopeError(error_description(str(exc))) from None


FORM = "application/x-www-form-urlencoded"
#: the endpoints (authlib's ``ENDPOINT_NAME``) besides the token endpoint whose parameters are a
#: form, with those each accepts more than once (RFC 8707 §2: ``resource``)
FORM_ENDPOINTS = {"introspection": frozenset(), "revocation": frozenset(),
                  "device_authorization": frozenset({"resource"})}


def check_form_parameters(repeatable: frozenset[str] = frozenset()) -> None:
    """docs/errors.md, "Form endpoints": the parameters are an ``application/x-www-form-urlencoded``
    body (RFC 6749 §3.2), none in the URI (client credentials never, §2.3.1), each at most once
    (§3.1, §3.2) but those in ``repeatable``; else ``invalid_request``. authlib reads query and
    body together and takes the first of repeated values, so this runs before it, and before any
    client is authenticated."""
    limit = flask_request.max_content_length
    if limit is not None and (flask_request.content_length or 0) > limit:
        raise RequestEntityTooLarge()  # docs/errors.md: 413 before anything is read, whatever the type
    if flask_request.query_string:
        raise InvalidRequestError("parameters must be sent in the request body, not in the URI "
                                  "(RFC 6749 sections 2.3.1 and 3.2)")
    if flask_request.content_length and flask_request.mimetype != FORM:
        raise InvalidRequestError(f"the request body must be {FORM} (RFC 6749 section 3.2)")
    if flask_request.content_length and not flask_request.form:  # werkzeug drops a body that is not UTF-8
        raise InvalidRequestError(f"the request body is not a UTF-8 {FORM} form")
    for name, values in flask_request.form.lists():
        if len(values) > 1 and name not in repeatable:
            raise InvalidRequestError(error_description(f"parameter {name} was sent more than once "
                                                        "(RFC 6749 section 3.2)", 200))


def check_one_method() -> None:
    """RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    request." authlib tries each method in turn, so a ``Basic`` header that does not authenticate
    (a wrong secret, or none) fell through to ``client_id``/``client_secret`` in the body, and
    the failure was counted against the header's client id instead of the body's
    (docs/security-web.md). A ``Basic`` header beside a body ``client_secret``, or beside a body
    ``client_id`` that differs from the header's, is ``invalid_client`` before any secret is
    compared."""
    scheme = flask_request.headers.get("Authorization", "").split(None, 1)[:1]
    if [part.lower() for part in scheme] != ["basic"]:
        return
    if "client_secret" in flask_request.form:
        raise InvalidClientError(status_code=401, description="the client authenticated both with HTTP Basic and "
                                 "with client_secret in the body; use one method (RFC 6749 section 2.3)")
    body_id = flask_request.form.get("client_id")
    if body_id is not None:
        try:
            basic_id, _secret = extract_basic_authorization(flask_request.headers)
        except ValueError:
            basic_id = None
        if body_id != basic_id:
            raise InvalidClientError(status_code=401, description="client_id in the body is not the client "
                                     "of the HTTP Basic credentials (RFC 6749 section 2.3)")


class GrantTypeError(UnsupportedGrantTypeError):
    """RFC 6749 §5.2: ``invalid_request`` when grant_type is missing, else ``unsupported_grant_type``,
    both with a description (authlib's own carries none)."""

    def __init__(self, grant_type: str | None):
        super().__init__(grant_type)
        if not grant_type:
            self.error = "invalid_request"
            self.description = "grant_type is required"
        else:
            self.description = error_description(f"grant_type {grant_type} is not supported", 200)


def save_token(token: dict, request) -> None:
    """Nothing to do: access tokens are self-contained JWTs, and a new refresh token is already
    queued to be stored by the request's commit (``RefreshService.issue``)."""


class AuthorizationServer(_FlaskAuthorizationServer):
    """authlib's Flask server for one app, with strict scope syntax checking and described
    errors. Built by ``init_oauth`` from the declared grants (:mod:`.protocol`), which it keeps in
    :attr:`grant_types`."""

    def __init__(self, clients: ClientRegistry, grant_types: tuple[str, ...], realm: str,
                 repeatable: dict[str, frozenset[str]]) -> None:
        # client authentication reads the process's copy of the client (no database read when fresh)
        super().__init__(query_client=clients.lookup, save_token=save_token)
        #: the grant types registered on this server (from the declared list), in order
        self.grant_types = grant_types
        #: the realm of the ``Basic`` challenge of a failed client authentication (the issuer)
        self.realm = realm
        #: per grant type, the token-request parameters it accepts more than once
        self.repeatable = repeatable

    def handle_response(self, status_code, payload, headers):
        """authlib's answer, but a 204 (RFC 7592 §2.3, a deleted client) has no body and so no
        content type (Flask would call its empty body HTML)."""
        if status_code == 204:
            response = Response(status=204, headers=headers)
            del response.headers["Content-Type"]
            return response
        return super().handle_response(status_code, payload, headers)

    def load_config(self, config) -> None:
        """Only our token generator; authlib's ``OAUTH2_*`` settings are not used here."""
        self.register_token_generator("default", generate_token)

    def validate_requested_scope(self, scope: str | None) -> None:
        if scope is not None:
            requested_scopes(scope)

    def get_authorization_grant(self, request):
        """authlib puts the raw ``response_type`` in its ``unsupported_response_type`` description
        (raising ValueError, a 500, when it holds a character RFC 6749 §5.2 forbids there) and its
        message in the error's ``response_type``; a missing one is no unsupported value at all."""
        try:
            return super().get_authorization_grant(request)
        except (ValueError, UnsupportedResponseTypeError):  # authlib swaps its description and value
            pass
        client = self.query_client(request.payload.client_id) if request.payload.client_id else None
        redirect_uri = None  # RFC 6749 §4.1.2.1: back to the client only to a verified redirect URI
        if client is not None:
            requested = request.payload.redirect_uri
            redirect_uri = requested if requested and client.check_redirect_uri(requested) else \
                None if requested else client.get_default_redirect_uri()
        if not request.payload.response_type:  # RFC 6749 §4.1.2.1: a missing parameter is invalid_request
            raise InvalidRequestError("response_type is required", redirect_uri=redirect_uri)
        raise UnsupportedResponseTypeError(
            None, error_description(f"response_type {request.payload.response_type} is not supported", 200),
            redirect_uri=redirect_uri)

    def create_token_response(self, request=None):
        grant_type = flask_request.form.getlist("grant_type")
        try:
            check_form_parameters(self.repeatable.get(grant_type[0], frozenset()) if len(grant_type) == 1
                                  else frozenset())
        except InvalidRequestError as error:
            return self.handle_error_response(None, error)
        return super().create_token_response(request)

    def create_endpoint_response(self, name, request=None):
        if name in FORM_ENDPOINTS:
            try:
                check_form_parameters(FORM_ENDPOINTS[name])
            except InvalidRequestError as error:
                return self.handle_error_response(None, error)
        return super().create_endpoint_response(name, request)

    def get_token_grant(self, request):
        try:
            return super().get_token_grant(request)
        except UnsupportedGrantTypeError:
            raise GrantTypeError(request.payload.grant_type) from None

    def authenticate_client(self, request, methods, endpoint="token"):
        return limited_authentication(lambda: self.authenticate_unlimited(request, methods, endpoint), request)

    def authenticate_unlimited(self, request, methods, endpoint):
        """authlib's client authentication, a malformed header answered ``invalid_client``."""
        check_one_method()
        try:
            return super().authenticate_client(request, methods, endpoint)
        except ValueError:  # authlib's Basic parser lets "Basic " and non-UTF-8 credentials through
            raise InvalidClientError(status_code=401, description="malformed Authorization header") from None

    def handle_error_response(self, request, error):
        if db.session.registry.has():  # a pending poll answered from Redis opened no session
            db.session.rollback()
        g.oauth_error = error.error  # for the endpoint's metrics, which need not parse the body
        if not error.description:  # RFC 6749 §5.2: every error here has an error_description
            error.description = error_description(error.get_error_description() or
                                                  error.error.replace("_", " "))
        response = super().handle_error_response(request, error)
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.startswith("Basic error="):  # authlib's 401 invalid_client; RFC 7617 §2 requires a realm
            response.headers["WWW-Authenticate"] = f'Basic realm="{self.realm}", {challenge[6:]}'
        return response

