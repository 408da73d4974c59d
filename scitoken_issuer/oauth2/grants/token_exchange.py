"""RFC 8693 token exchange at ``/auth/token``, for clients an administrator allowed
(docs/token-exchange.md): one token in, a narrower one out, acting for the same subject.

The rules live in :class:`~scitoken_issuer.services.exchange.TokenExchange`; this grant reads
the request (RFC 8693 §2.1), decides the scopes through the same policy as every grant (the
POSIX rule for a user's storage scopes, the exchanging client's registered policy), mints the
token in the exchanging client's profile and answers as RFC 8693 §2.2 says.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError, OAuth2Error, UnauthorizedClientError
from authlib.oauth2.rfc6749.grants import BaseGrant, TokenEndpointMixin

from ...extensions import runtime
from ...services.audit import audit
from ...services.clients import TOKEN_EXCHANGE_GRANT
from ...services.exchange import ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, ExchangeRefused, SubjectToken
from ...services.identities import IdentityCheckFailed
from ...services.policy import Refusal, check_client_scopes
from ...services.scopes import render_scopes
from ...services.tokens import TokenRequest
from ..audience import InvalidTargetError, requested_audience
from ..server import error_description, requested_scopes
from ..tokens import bearer_response, client_profile
from .refresh_token import recheck_user

#: RFC 8693 §2.1 parameters that may appear once only.
SINGLE = ("subject_token", "subject_token_type", "requested_token_type", "scope", "actor_token",
          "actor_token_type")


def refused(exc: ExchangeRefused) -> OAuth2Error:
    """The authlib error for a refusal of the exchange rules."""
    kinds = {"invalid_scope": InvalidScopeError, "invalid_target": InvalidTargetError}
    return kinds.get(exc.error, InvalidRequestError)(error_description(exc.description))


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):
    """``grant_type=urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693 §2)."""

    GRANT_TYPE = TOKEN_EXCHANGE_GRANT
    #: confidential clients only: an exchange acts on someone else's token
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    #: RFC 8693 §2.1: ``audience`` and ``resource`` may be sent more than once (every other
    #: parameter once only, RFC 6749 §3.2; the server refuses repeats of the others)
    REPEATABLE_PARAMETERS = frozenset({"audience", "resource"})

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"client {client.client_id} may not use token exchange "
                                          "(an administrator allows it: scitoken-issuer client update "
                                          "--allow-exchange)")
        self.request.client = client
        try:
            self._validate(client)
        except ExchangeRefused as exc:
            self._audit_refusal(client, exc.description)
            raise refused(exc) from None
        except OAuth2Error as exc:
            self._audit_refusal(client, exc.description or exc.error)
            raise

    def _audit_refusal(self, client, reason: str) -> None:
        subject = getattr(self.request, "exchange_subject", None)
        audit("exchange", "refused", subject=subject.subject if subject else None, client_id=client.client_id,
              scope=self.request.payload.data.get("scope"), reason=reason, grant_type=self.GRANT_TYPE,
              subject_jti=subject.jti if subject else None)

    def _param(self, name: str, required: bool = False) -> str | None:
        values = self.request.payload.datalist.get(name) or []
        if len(values) > 1 and name in SINGLE:
            raise InvalidRequestError(f"{name} may be sent only once")
        value = values[0] if values else None
        if required and not value:
            raise InvalidRequestError(f"{name} is required (RFC 8693 section 2.1)")
        return value or None

    def _validate(self, client) -> None:
        token = self._param("subject_token", required=True)
        token_type = self._param("subject_token_type", required=True)
        if self._param("actor_token") or self._param("actor_token_type"):
            raise InvalidRequestError("actor_token is not supported: the authenticated client is the actor")
        wanted = self._param("requested_token_type") or ACCESS_TOKEN_TYPE
        if wanted == REFRESH_TOKEN_TYPE:
            raise InvalidRequestError("requested_token_type refresh_token is refused: an exchange issues "
                                      "access tokens only, which never outlive their subject token")
        if wanted != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"requested_token_type must be {ACCESS_TOKEN_TYPE}")
        asked_scope = self._param("scope")
        requested = requested_scopes(asked_scope) if asked_scope is not None else None
        asked_audience = self._audience()

        service = runtime().exchange
        # a replayed refresh token's family is revoked in its own transaction (RefreshService.check_presented)
        subject = service.subject(token, token_type, lambda client_id: client_profile(_live(client_id)))
        self.request.exchange_subject = subject
        if subject.family is not None:
            self._recheck(subject)
        profile = client_profile(client)
        scopes = service.requested_scopes(subject, requested)
        wider = service.outside_subject(subject, scopes, profile)
        if wider is not None:
            raise InvalidScopeError(error_description(f"scope {wider.raw} is wider than the subject token's"))
        groups = self._decide(client, subject, scopes)
        self.request.exchange = TokenRequest(
            subject=subject.subject, client_id=client.client_id, scopes=render_scopes(scopes, profile),
            grant_type=self.GRANT_TYPE, profile=profile, audience=_aud(service.audience(subject, asked_audience)),
            groups=service.groups(subject, groups), lifetime=service.lifetime(subject), not_after=subject.expires_at,
            extra_claims={"act": service.actor(client.client_id, subject), **service.link_claims(subject)})

    def _decide(self, client, subject: SubjectToken, scopes) -> list[str]:
        """The policy every grant applies: for a user, ``grant_scopes`` (the exchanging client's
        policy and the POSIX rule now); for a client's own token, the exchanging client's policy."""
        rt = runtime()
        if subject.kind == ACCESS_TOKEN_TYPE and rt.clients.lookup(subject.subject) is not None:
            decision = check_client_scopes(client, scopes, for_user=False)
            if decision is None:
                return []
        else:
            decision = rt.user_scopes.grant_scopes(subject.subject, scopes, client)
            if not isinstance(decision, Refusal):
                return decision.groups
        raise InvalidScopeError(error_description(decision.reason))

    def _recheck(self, subject: SubjectToken) -> None:
        """A refresh token stands for the user's authorization: re-check them at the upstream IdP
        as a refresh would (docs/tokens.md, "Refresh families")."""
        try:
            recheck_user(subject.family)
        except IdentityCheckFailed as exc:
            raise ExchangeRefused("invalid_request", f"subject_token: {exc}") from None

    def _audience(self) -> list[str] | None:
        """``audience`` and ``resource`` together (RFC 8693 §2.1, RFC 8707): the services the new
        token is for; outside the site's ``AUDIENCE`` is ``invalid_target``."""
        asked = requested_audience(self.request.payload, outside=InvalidTargetError)
        if asked is None:
            return None
        return [asked] if isinstance(asked, str) else list(asked)

    def create_token_response(self):
        minted = runtime().tokens.mint(self.request.exchange)
        subject: SubjectToken = self.request.exchange_subject
        audit("exchange", "granted", subject=subject.subject, client_id=self.request.client.client_id,
              scope=minted.claims["scope"], jti=minted.claims["jti"], actor=minted.claims["act"],
              subject_client_id=subject.client_id, subject_jti=subject.jti, subject_token_type=subject.kind)
        token = {**bearer_response(minted), "issued_token_type": ACCESS_TOKEN_TYPE}
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def _live(client_id: str):
    """The client a refresh family belongs to; a deleted client's families are not exchanged."""
    found = runtime().clients.lookup(client_id)
    if found is None:
        raise ExchangeRefused("invalid_request", "subject_token belongs to a client that no longer exists")
    return found


def _aud(values: list[str] | None):
    if not values:
        return None
    return values[0] if len(values) == 1 else values
