"""The issuer's client of the upstream OpenID Connect identity provider (``IDP_ADDRESS``).

Logs users in with the authorization code flow (state, nonce, PKCE S256, RFC 9207 ``iss``),
validates the id token against the IdP's published keys, and later re-checks a user with the
IdP refresh token. Safe to share between threads; no token or secret is ever logged.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from .. import metrics

logger = logging.getLogger(__name__)

# Asymmetric signature algorithms only: never "none", never HMAC keyed with the client secret.
SIGNING_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512", "EdDSA", "Ed25519"})
# A portable POSIX user name (POSIX.1 3.437, as useradd accepts by default), at most 32 characters.
POSIX_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")
CLOCK_LEEWAY = 60
METADATA_TTL = 3600
JWKS_MIN_REFRESH = 60


class UpstreamError(Exception):
    """Anything that went wrong talking to the upstream IdP."""


class UpstreamLoginError(UpstreamError):
    """The login cannot be completed; ``str(error)`` is a message fit to show the user."""


class UpstreamLoginRefused(UpstreamLoginError):
    """The IdP itself answered the sign-in with an error (the user cancelled, or the IdP refused)."""


class UpstreamUnavailable(UpstreamError):
    """The IdP could not be reached or answered with a server error: callers answer 503."""


class UpstreamUserDisabled(UpstreamError):
    """The IdP no longer accepts the user's refresh token (invalid_grant)."""


@dataclass(frozen=True)
class LoginState:
    """What ``finish_login`` needs from ``begin_login``; keep it server-side (it holds the PKCE verifier)."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LoginState":
        return cls(state=str(data["state"]), nonce=str(data["nonce"]),
                   code_verifier=str(data["code_verifier"]), redirect_uri=str(data["redirect_uri"]),
                   created_at=float(data["created_at"]))


@dataclass(frozen=True)
class UpstreamLogin:
    """A completed login: the IdP's ``sub``, the POSIX user name, the claims and the IdP tokens."""

    subject: str
    username: str
    claims: dict[str, Any]
    refresh_token: str | None = field(repr=False)
    id_token: str = field(repr=False)


class UpstreamIdP:
    """Client of one upstream OIDC provider, configured by its address and our client credentials."""

    def __init__(self, address: str, client_id: str, client_secret: str,
                 username_claim: str = "preferred_username", timeout: float = 10,
                 login_lifetime: int = 900):
        self.address = address.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.username_claim = username_claim
        self.timeout = timeout
        self.login_lifetime = login_lifetime
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    def __repr__(self) -> str:
        return f"UpstreamIdP({self.address!r}, client_id={self.client_id!r})"

    # -- discovery and keys ------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The IdP's OpenID discovery document, fetched once an hour (a stale copy if it is down)."""
        with self._lock:
            cached, fetched_at = self._metadata, self._metadata_at
        if cached is not None and time.monotonic() - fetched_at < METADATA_TTL:
            return cached
        try:  # outside the lock: a slow IdP must not queue every thread behind one request
            document = self._get_json(f"{self.address}/.well-known/openid-configuration")
        except UpstreamUnavailable:
            if cached is not None:
                return cached
            raise
        missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                   if not isinstance(document.get(k), str)]
        if missing:
            metrics.idp_error("bad_response")
            raise UpstreamError(f"IdP discovery document lacks {', '.join(missing)}")
        if document["issuer"].rstrip("/") != self.address:  # OIDC Discovery §4.3
            metrics.idp_error("bad_response")
            raise UpstreamError(f"IdP discovery names issuer {document['issuer']!r}, not {self.address!r}")
        with self._lock:
            self._metadata, self._metadata_at = document, time.monotonic()
        return document

    def _keys(self, refresh: bool = False) -> KeySet:
        """The IdP's signing keys; ``refresh`` re-fetches them (at most once a minute)."""
        jwks_uri = self.metadata()["jwks_uri"]
        with self._lock:
            keys, fetched_at = self._jwks, self._jwks_at
        if keys is not None and not (refresh and time.monotonic() - fetched_at >= JWKS_MIN_REFRESH):
            return keys
        try:
            keys = KeySet.import_key_set(self._get_json(jwks_uri))  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as error:
            metrics.idp_error("bad_response")
            raise UpstreamError(f"IdP JWKS is not usable: {error}") from error
        with self._lock:
            self._jwks, self._jwks_at = keys, time.monotonic()
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.RequestException as error:
            metrics.idp_error("unavailable")
            logger.warning("upstream IdP unreachable at %s: %s", url, type(error).__name__)
            raise UpstreamUnavailable("the identity provider cannot be reached") from error
        if response.status_code >= 500:
            metrics.idp_error("unavailable")
            logger.warning("upstream IdP answered %s at %s", response.status_code, url)
            raise UpstreamUnavailable("the identity provider is not working right now")
        try:
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            metrics.idp_error("bad_response")
            raise UpstreamError(f"unexpected answer from the IdP at {url}: HTTP {response.status_code}") from error
        if not isinstance(document, dict):
            metrics.idp_error("bad_response")
            raise UpstreamError(f"unexpected answer from the IdP at {url}: not a JSON object")
        return document

    def _session(self) -> OAuth2Session:
        """A fresh authlib client (requests sessions are not thread-safe), authenticating as advertised."""
        methods = self.metadata().get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if "client_secret_basic" in methods:
            method = "client_secret_basic"
        elif "client_secret_post" in methods:
            method = "client_secret_post"
        else:
            raise UpstreamError(f"IdP supports neither client_secret_basic nor client_secret_post: {methods}")
        return OAuth2Session(self.client_id, self._client_secret, token_endpoint_auth_method=method,
                             code_challenge_method="S256", default_timeout=self.timeout)

    # -- login ---------------------------------------------------------------------------------

    def begin_login(self, redirect_uri: str, scope: str = "openid profile offline_access",
                    fresh: bool = False, **extra: str) -> tuple[str, LoginState]:
        """The IdP authorization URL to send the browser to, and the state to keep for ``finish_login``.

        ``extra`` adds authorization parameters (``login_hint``, ``prompt`` …). Asking
        ``offline_access`` implies ``prompt=consent`` unless ``prompt`` is given: OIDC Core §11 says
        it MUST be used, and strict providers (oidc-provider) drop ``offline_access`` without it.
        ``fresh`` adds ``prompt=login``: the user must sign in again at the IdP, not ride its
        session (OIDC Core §3.1.2.1; our client asked for ``prompt=login`` or ``max_age``).
        """
        if "offline_access" in scope.split():
            extra.setdefault("prompt", "consent")
        if fresh:
            extra["prompt"] = " ".join(["login", *(p for p in extra.get("prompt", "").split() if p != "login")])
        login_state = LoginState(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                                 code_verifier=secrets.token_urlsafe(48), redirect_uri=redirect_uri)
        endpoint = self.metadata()["authorization_endpoint"]
        with self._session() as session:
            url, _ = session.create_authorization_url(
                endpoint, state=login_state.state, code_verifier=login_state.code_verifier,
                nonce=login_state.nonce, redirect_uri=redirect_uri, scope=scope, **extra)
        return url, login_state

    def finish_login(self, params: Mapping[str, str], login_state: LoginState) -> UpstreamLogin:
        """Check the IdP's redirect ``params``, exchange the code and validate the id token."""
        metadata = self.metadata()
        if not hmac.compare_digest(str(params.get("state", "")).encode(), login_state.state.encode()):
            raise UpstreamLoginError("The login response does not belong to this login (state mismatch). "
                                     "Please start again.")
        if time.time() - login_state.created_at > self.login_lifetime:
            raise UpstreamLoginError("The login took too long. Please start again.")
        iss = params.get("iss")
        if iss is not None or metadata.get("authorization_response_iss_parameter_supported"):
            if iss != metadata["issuer"]:  # RFC 9207 §2.4: mix-up protection
                raise UpstreamLoginError("The login response came from the wrong identity provider.")
        if params.get("error"):
            description = params.get("error_description")
            logger.info("upstream IdP refused the login: %s", params["error"])
            raise UpstreamLoginRefused(f"The identity provider refused the login ({params['error']}"
                                     + (f": {description})." if description else ")."))
        if not params.get("code"):
            raise UpstreamLoginError("The login response carries no authorization code.")
        token = self._token_request(lambda s: s.fetch_token(
            metadata["token_endpoint"], grant_type="authorization_code", code=params["code"],
            redirect_uri=login_state.redirect_uri, code_verifier=login_state.code_verifier))
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise UpstreamLoginError("The identity provider sent no id token.")
        claims = self.validate_id_token(id_token, login_state.nonce)
        if self.username_claim not in claims and token.get("access_token") and metadata.get("userinfo_endpoint"):
            claims = {**self._userinfo(metadata["userinfo_endpoint"], token["access_token"], claims["sub"]),
                      **claims}
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not username:
            raise UpstreamLoginError(f"The identity provider did not say who you are "
                                     f"(no {self.username_claim!r} claim).")
        if not POSIX_USER_NAME.fullmatch(username):
            raise UpstreamLoginError(f"The user name {username!r} from the identity provider "
                                     "is not a valid POSIX user name.")
        logger.info("upstream login: subject %s, user %s", claims["sub"], username)
        return UpstreamLogin(subject=claims["sub"], username=username, claims=claims,
                             refresh_token=token.get("refresh_token"), id_token=id_token)

    def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` if signature, iss, aud, azp, exp, iat and nonce are right."""
        metadata = self.metadata()
        algorithms = [a for a in metadata.get("id_token_signing_alg_values_supported", ["RS256"])
                      if a in SIGNING_ALGORITHMS]
        try:
            try:
                token = jwt.decode(id_token, self._keys(), algorithms=algorithms)
            except InvalidKeyIdError:  # the IdP may have rotated its keys
                token = jwt.decode(id_token, self._keys(refresh=True), algorithms=algorithms)
            claims = token.claims
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY,
                iss={"essential": True, "value": metadata["issuer"]},
                sub={"essential": True},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError) as error:
            logger.warning("upstream id token refused: %s", type(error).__name__)
            raise UpstreamLoginError("The identity provider's id token is not valid.") from error
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != self.client_id:
            raise UpstreamLoginError("The identity provider's id token is for another client (azp).")
        if not isinstance(claims["nonce"], str) or not hmac.compare_digest(claims["nonce"].encode(),
                                                                           nonce.encode()):
            raise UpstreamLoginError("The identity provider's id token does not belong to this login (nonce).")
        return dict(claims)

    def _userinfo(self, endpoint: str, access_token: str, subject: str) -> dict[str, Any]:
        """Claims from the userinfo endpoint, for IdPs that keep profile claims out of the id token."""
        try:
            response = requests.get(endpoint, timeout=self.timeout,
                                    headers={"Authorization": f"Bearer {access_token}"})
        except requests.RequestException as error:
            metrics.idp_error("unavailable")
            raise UpstreamUnavailable("the identity provider cannot be reached") from error
        if response.status_code >= 500:
            metrics.idp_error("unavailable")
            raise UpstreamUnavailable("the identity provider is not working right now")
        try:
            info = response.json() if response.ok else {}
        except ValueError:
            info = {}
        if not isinstance(info, dict) or info.get("sub") != subject:  # OIDC Core §5.3.2
            return {}
        return info

    # -- re-check --------------------------------------------------------------------------------

    def recheck(self, refresh_token: str) -> str | None:
        """Use the IdP refresh token; return the one to keep (rotated or the same).

        Raises ``UpstreamUserDisabled`` when the IdP refuses it, ``UpstreamUnavailable`` when down.
        """
        endpoint = self.metadata()["token_endpoint"]
        try:
            token = self._token_request(lambda s: s.refresh_token(endpoint, refresh_token=refresh_token))
        except UpstreamLoginError as error:
            if isinstance(error.__cause__, OAuthError) and error.__cause__.error == "invalid_grant":
                raise UpstreamUserDisabled("the identity provider no longer accepts this login") from error
            raise UpstreamError(str(error)) from error
        return token.get("refresh_token") or refresh_token

    def _token_request(self, call: Callable[[OAuth2Session], Any]) -> dict[str, Any]:
        """Run ``call(session)`` against the token endpoint, mapping failures to our errors."""
        try:
            with self._session() as session:
                token = call(session)
        except OAuthError as error:
            logger.info("upstream token endpoint refused: %s", error.error)
            raise UpstreamLoginError(f"The identity provider refused the login ({error.error}).") from error
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else 0
            logger.warning("upstream token endpoint answered HTTP %s", status)
            if status >= 500 or status in (429,):
                metrics.idp_error("unavailable")
                raise UpstreamUnavailable("the identity provider is not working right now") from error
            metrics.idp_error("bad_response")
            raise UpstreamError(f"unexpected answer from the IdP token endpoint: HTTP {status}") from error
        except requests.RequestException as error:
            metrics.idp_error("unavailable")
            logger.warning("upstream token endpoint unreachable: %s", type(error).__name__)
            raise UpstreamUnavailable("the identity provider cannot be reached") from error
        except ValueError as error:
            metrics.idp_error("bad_response")
            raise UpstreamError("unexpected answer from the IdP token endpoint") from error
        return dict(token)
