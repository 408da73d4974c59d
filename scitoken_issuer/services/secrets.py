"""Keyed hashes for stored secrets and encryption at rest, both derived from ``SECRET_KEY``.

Client secrets, codes and refresh tokens are generated with 256 bits of entropy, so a fast keyed
hash (HMAC-SHA-256) is the right store: a slow password hash would cap the token endpoint and
adds nothing against guessing. Private signing keys and IdP refresh tokens must be read back, so
they are encrypted with Fernet (AES-128-CBC + HMAC-SHA-256) under a key derived by HKDF.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"scitoken-issuer", info=purpose).derive(
        secret_key.encode())


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret of ``nbytes`` bytes of entropy (256 bits by default)."""
    return secrets.token_urlsafe(nbytes)


class DecryptionError(Exception):
    """Stored ciphertext could not be decrypted (wrong SECRET_KEY or tampering)."""


class SecretBox:
    """Hashing and at-rest encryption under keys derived from one ``SECRET_KEY``."""

    def __init__(self, secret_key: str):
        self._hash_key = _derive(secret_key, b"stored-secret-hash v1")
        self._derive_key = _derive(secret_key, b"derived-secret v1")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, b"at-rest-encryption v1")))

    def hash(self, value: str) -> str:
        """Hex HMAC-SHA-256 of ``value``: what the database keeps instead of the secret."""
        return hmac.new(self._hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def derive(self, purpose: str, value: str) -> str:
        """A secret as strong as :func:`new_secret` computed from ``value``: only this issuer can
        compute it, and the same ``value`` always gives the same secret (idempotent issuing)."""
        digest = hmac.new(self._derive_key, f"{purpose}\0{value}".encode("utf-8", "surrogatepass"),
                          hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext)
        except InvalidToken:
            raise DecryptionError("stored secret cannot be decrypted: was SECRET_KEY changed?") from None
