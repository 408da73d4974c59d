"""RFC 8628 §3.1 device authorization endpoint (``/auth/device/code``).

Besides ``scope`` it takes ``audience`` (docs/tokens.md, "Audience"): validated here and kept
with the device code, so the tokens the device later receives carry it."""

from __future__ import annotations

from authlib.common.urls import add_params_to_uri
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceAuthorizationEndpoint

from ..extensions import runtime
from ..services.clients import DEVICE_GRANT
from ..services.device import format_user_code, new_device_code, new_user_code
from ..services.policy import check_client_scopes
from ..urls import issuer_url
from .audience import requested_audience, to_text
from .server import requested_scopes


class DeviceAuthorizationEndpoint(_DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def EXPIRES_IN(self) -> int:  # noqa: N802 - authlib's attribute name
        return runtime().settings.device_code_lifetime

    @property
    def INTERVAL(self) -> int:  # noqa: N802
        return runtime().settings.device_poll_interval

    def authenticate_client(self, request):
        client = super().authenticate_client(request)
        if not client.check_grant_type(DEVICE_GRANT):
            raise UnauthorizedClientError("the client is not registered for the device flow")
        refusal = check_client_scopes(client, requested_scopes(request.payload.scope), for_user=True)
        if refusal:
            raise InvalidScopeError(refusal.reason)
        return client

    def create_endpoint_response(self, request):
        """authlib's response (RFC 8628 §3.2), with ``audience`` validated and stored as well
        (authlib's ``save_device_credential`` hook does not see the request)."""
        client = self.authenticate_client(request)
        self.server.validate_requested_scope(request.payload.scope)
        audience = requested_audience(request.payload)
        device_code, user_code = self.generate_device_code(), self.generate_user_code()
        verification_uri = self.get_verification_uri()
        data = {"device_code": device_code, "user_code": user_code, "verification_uri": verification_uri,
                "verification_uri_complete": add_params_to_uri(verification_uri, [("user_code", user_code)]),
                "expires_in": self.EXPIRES_IN, "interval": self.INTERVAL}
        runtime().device.create(client.get_client_id(), request.payload.scope or "", device_code,
                                user_code.replace("-", ""), audience=to_text(audience))
        return 200, data, default_json_headers

    def generate_user_code(self) -> str:
        return format_user_code(new_user_code())

    def generate_device_code(self) -> str:
        return new_device_code()

    def get_verification_uri(self) -> str:
        return issuer_url("oauth.device.verify")

