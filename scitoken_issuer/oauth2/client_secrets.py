"""``client_secret_basic`` and ``client_secret_post`` (RFC 6749 §2.3.1), registered on the server
so that the secret is checked by the client registry (a keyed hash), not by the model."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from ..models import Client
from ..services.clients import ClientRegistry


class SecretAuthentication:
    """The two secret methods, as authlib's client authentication registry calls them."""

    def __init__(self, clients: ClientRegistry):
        self.clients = clients

    def basic(self, query_client, request) -> Client | None:
        """RFC 6749 §2.3.1 HTTP Basic; an unknown client is 401 ``invalid_client``."""
        client_id, client_secret = extract_basic_authorization(request.headers)
        return self.check(client_id, client_secret, 401)

    def post(self, query_client, request) -> Client | None:
        """RFC 6749 §2.3.1 credentials in the form body."""
        return self.check(request.form.get("client_id"), request.form.get("client_secret"), 400)

    def check(self, client_id, client_secret, status_code: int) -> Client | None:
        if not client_id or not client_secret:
            return None
        client = self.clients.lookup(client_id)
        if client is None:
            raise InvalidClientError(status_code=status_code, description="The client does not exist on this server.")
        return client if self.clients.check_secret(client, client_secret) else None
