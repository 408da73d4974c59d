"""Database models. Secrets (client secrets, codes, refresh tokens) are stored only as keyed hashes."""

from .clients import Client
from .codes import AuthorizationCode, DeviceCode
from .identities import UpstreamIdentity
from .keys import SigningKey
from .tokens import RefreshFamily, RefreshToken, Revocation

__all__ = ["Client", "AuthorizationCode", "DeviceCode", "UpstreamIdentity", "SigningKey",
           "RefreshFamily", "RefreshToken", "Revocation"]
