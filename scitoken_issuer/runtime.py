"""Per-app shared services, built once in ``create_app`` and kept in ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

from .services.clients import ClientRegistry
from .services.keys import KeyStore
from .services.refresh import RefreshService
from .services.secrets import SecretBox
from .services.tokens import TokenService
from .settings import ConfigError, Settings


@dataclass
class Runtime:
    settings: Settings
    secrets: SecretBox
    keys: KeyStore
    tokens: TokenService
    clients: ClientRegistry
    refresh: RefreshService

    def readiness_checks(self) -> dict:
        """name -> callable answering "ok" or why not, for dependencies this deployment uses."""
        return {}

    @classmethod
    def build(cls, settings: Settings, secret_key: str) -> "Runtime":
        box = SecretBox(secret_key)
        keys = KeyStore(box, alg=settings.key_type, rsa_bits=settings.key_size,
                        rotation_seconds=settings.key_rotation_days * 86400,
                        publish_seconds=settings.key_publish_hours * 3600,
                        max_token_lifetime=settings.access_token_lifetime)
        clients = ClientRegistry(box, settings.issuer_address)
        try:
            clients.load_static(settings.static_clients)
        except ValueError as exc:
            raise ConfigError(f"STATIC_CLIENTS: {exc}") from None
        tokens = TokenService(keys, settings.issuer_address, settings.audience, settings.access_token_lifetime)
        return cls(settings=settings, secrets=box, keys=keys, tokens=tokens,
                   clients=clients,
                   refresh=RefreshService(box, settings.refresh_token_lifetime, settings.refresh_reuse_grace))
