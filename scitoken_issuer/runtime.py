"""Per-app shared services, built once in ``create_app`` and kept in ``app.extensions``.

This is where services meet their collaborators (each gets them in its constructor); it holds no
logic of its own. Building them opens no connection: Redis and LDAP clients connect on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .background import request_tree_index
from .services.authorization import ScopePolicy, UserScopes
from .services.clients import ClientRegistry
from .services.device import DeviceFlow
from .services.device_decisions import DeviceDecisions
from .services.directory import build_group_source
from .services.exchange import TokenExchange
from .services.group_cache import GroupCache
from .services.identities import Identities
from .services.keys import KeyStore
from .services.login import Logins
from .services.maintenance import Maintenance
from .services.posix import StatCache
from .services.readiness import Readiness
from .services.schema import SchemaState
from .services.refresh import RefreshService
from .services.revocations import RevocationList
from .services.secrets import SecretBox
from .services.state_push import StatePush
from .services.state_version import StateVersion
from .services.tokens import TokenService
from .services.tree_store import TreeIndexStore
from .services.upstream_idp import UpstreamIdP
from .settings import ConfigError, Settings
from .urls import issuer_url


@dataclass
class Runtime:
    """The services of one app; read at the edges only (views, grants, tasks, CLI) through
    :func:`scitoken_issuer.extensions.runtime`."""

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
    user_scopes: UserScopes
    identities: Identities
    logins: Logins
    device_decisions: DeviceDecisions
    maintenance: Maintenance
    readiness: Readiness
    schema: SchemaState
    exchange: TokenExchange

    @classmethod
    def build(cls, settings: Settings, secret_key: str, grant_types: tuple[str, ...]) -> "Runtime":
        """Every shared service with its collaborators; ``grant_types`` are the grants the
        authorization server runs (what clients, static ones too, may register)."""
        box = SecretBox(secret_key)
        keys = KeyStore(box, alg=settings.key_type, rsa_bits=settings.key_size,
                        rotation_seconds=settings.key_rotation_days * 86400,
                        publish_seconds=settings.key_publish_hours * 3600,
                        max_token_lifetime=settings.access_token_lifetime)
        client = None
        if settings.redis_url:
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3,
                                          health_check_interval=30)
        push = StatePush(settings.redis_url, client, StateVersion.KEY) if client is not None else None
        version = StateVersion(client, max_age=settings.shared_state_max_age, push=push)
        revocations = RevocationList(box, version, max_token_lifetime=settings.access_token_lifetime)
        clients = ClientRegistry(box, lambda client_id: issuer_url("oauth.registration.configure", client_id=client_id),
                                 frozenset(grant_types), version, revocations)
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
        refresh = RefreshService(box, settings.refresh_token_lifetime, settings.refresh_reuse_grace, revocations)
        device = DeviceFlow(box, client, settings.device_code_lifetime, settings.device_poll_interval)
        user_scopes = UserScopes(groups, policy)
        identities = Identities(box, idp, settings.idp_recheck_interval)
        schema = SchemaState()
        return cls(settings=settings, secrets=box, keys=keys, tokens=tokens, clients=clients, refresh=refresh,
                   revocations=revocations, version=version, redis=client, groups=groups, tree=tree,
                   policy=policy, idp=idp, device=device, user_scopes=user_scopes, identities=identities,
                   logins=Logins(idp, groups, identities),
                   device_decisions=DeviceDecisions(device, clients, user_scopes),
                   maintenance=Maintenance(client, keys, tree, refresh, revocations),
                   readiness=Readiness(keys, client, idp, settings.posix_path, schema),
                   schema=schema,
                   exchange=TokenExchange(tokens, revocations, refresh, settings.token_profile))
