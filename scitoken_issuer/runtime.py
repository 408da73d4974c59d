"""Per-app shared services, built once in ``create_app`` and kept in ``app.extensions``.

Building them opens no connection: Redis and LDAP clients connect on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .background import request_tree_index
from .services.authorization import ScopePolicy
from .services.clients import ClientRegistry
from .services.device import DeviceFlow
from .services.directory import build_group_source
from .services.group_cache import GroupCache
from .services.keys import KeyStore
from .services.posix import StatCache
from .services.refresh import RefreshService
from .services.revocations import RevocationList
from .services.secrets import SecretBox
from .services.state_version import StateVersion
from .services.tokens import TokenService
from .services.tree_store import TreeIndexStore
from .services.upstream_idp import UpstreamIdP
from .settings import ConfigError, Settings


@dataclass
class Runtime:
    settings: Settings
    secrets: SecretBox
    keys: KeyStore
    tokens: TokenService
    clients: ClientRegistry
    refresh: RefreshService
    revocations: RevocationList
    version: StateVersion
    redis: redis.Redis | None
    groups: GroupCache
    tree: TreeIndexStore | None
    policy: ScopePolicy
    idp: UpstreamIdP | None
    device: DeviceFlow

    def grant_scopes(self, username: str, requested, client):
        """The one scope decision for a user by name: their groups (cache), then the policy."""
        return self.policy.grant_scopes(self.groups.get(username), requested, client)

    def readiness_checks(self) -> dict:
        """name -> callable answering "ok" or why not, for dependencies this deployment uses."""
        checks = {}
        if self.redis is not None:
            def redis_ok() -> str:
                try:
                    return "ok" if self.redis.ping() else "no answer"
                except redis.RedisError:
                    return "unavailable"
            checks["redis"] = redis_ok
        if self.idp is not None:
            def idp_ok() -> str:
                try:
                    self.idp.metadata()
                    return "ok"
                except Exception:  # readiness reports, never raises
                    return "unavailable"
            checks["idp"] = idp_ok
        return checks

    @classmethod
    def build(cls, settings: Settings, secret_key: str) -> "Runtime":
        box = SecretBox(secret_key)
        keys = KeyStore(box, alg=settings.key_type, rsa_bits=settings.key_size,
                        rotation_seconds=settings.key_rotation_days * 86400,
                        publish_seconds=settings.key_publish_hours * 3600,
                        max_token_lifetime=settings.access_token_lifetime)
        client = None
        if settings.redis_url:
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3,
                                          health_check_interval=30)
        version = StateVersion(client, max_age=settings.shared_state_max_age)
        revocations = RevocationList(box, version, max_token_lifetime=settings.access_token_lifetime)
        clients = ClientRegistry(box, settings.issuer_address, version, revocations)
        try:
            clients.load_static(settings.static_clients)
        except ValueError as exc:
            raise ConfigError(f"STATIC_CLIENTS: {exc}") from None
        try:
            source = build_group_source(settings)
        except ValueError as exc:
            raise ConfigError(f"DEV_USERS_FILE: {exc}") from None
        groups = GroupCache(source, client, ttl=settings.group_cache_ttl,
                            max_staleness=settings.group_cache_max_staleness)
        tree = None
        if settings.posix_path:
            tree = TreeIndexStore(settings.posix_path, client, max_age=settings.tree_index_max_age,
                                  request_build=lambda: request_tree_index(client),
                                  wait_seconds=settings.tree_index_wait)
        policy = ScopePolicy(settings.posix_path, settings.posix_strict, index=tree.get if tree else None,
                             stat_cache=StatCache(ttl=1.0), default_profile=settings.token_profile)
        idp = None
        if settings.idp_address:
            idp = UpstreamIdP(settings.idp_address, settings.idp_client_id, settings.idp_client_secret,
                              username_claim=settings.idp_username_claim)
        tokens = TokenService(keys, settings.issuer_address, settings.audience, settings.access_token_lifetime,
                              revocations)
        return cls(settings=settings, secrets=box, keys=keys, tokens=tokens, clients=clients,
                   refresh=RefreshService(box, settings.refresh_token_lifetime, settings.refresh_reuse_grace,
                                          revocations),
                   revocations=revocations, version=version, redis=client, groups=groups, tree=tree, policy=policy, idp=idp,
                   device=DeviceFlow(box, client, settings.device_code_lifetime, settings.device_poll_interval))
