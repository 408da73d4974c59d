"""The authorization server: authlib's Flask server with this issuer's clients, scopes and tokens."""

from __future__ import annotations

import logging

from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import InvalidScopeError

from ..extensions import db, runtime
from ..models import Client
from ..services.scopes import ScopeError, parse_scopes
from .tokens import generate_token

logger = logging.getLogger(__name__)


def query_client(client_id: str) -> Client | None:
    return runtime().clients.get(client_id)


def save_token(token: dict, request) -> None:
    """Tokens are recorded when minted (:mod:`scitoken_issuer.services.tokens`); nothing to do."""


class AuthorizationServer(_FlaskAuthorizationServer):
    """Adds strict scope syntax checking; every grant and endpoint is registered in ``init_app``."""

    def __init__(self) -> None:
        super().__init__(query_client=query_client, save_token=save_token)

    def load_config(self, config) -> None:
        self.register_token_generator("default", generate_token)
        self._error_uris = None

    def validate_requested_scope(self, scope: str | None) -> None:
        if scope is None:
            return
        try:
            parse_scopes(scope)
        except ScopeError as exc:
            raise InvalidScopeError(str(exc)) from None

    def handle_error_response(self, request, error):
        db.session.rollback()
        return super().handle_error_response(request, error)


authorization = AuthorizationServer()
