"""RFC 8628 §3.1 device authorization endpoint (``/auth/device/code``)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceAuthorizationEndpoint

from ..extensions import runtime
from ..services.clients import DEVICE_GRANT
from ..services.device import format_user_code, new_device_code, new_user_code
from ..services.policy import check_client_scopes
from .metadata import CLIENT_AUTH_METHODS
from .server import requested_scopes


class DeviceAuthorizationEndpoint(_DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

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

    def generate_user_code(self) -> str:
        return format_user_code(new_user_code())

    def generate_device_code(self) -> str:
        return new_device_code()

    def get_verification_uri(self) -> str:
        return f"{runtime().settings.issuer_address}/auth/device"

    def save_device_credential(self, client_id: str, scope: str | None, data: dict) -> None:
        runtime().device.create(client_id, scope or "", data["device_code"], data["user_code"].replace("-", ""))
