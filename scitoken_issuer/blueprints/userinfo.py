"""OIDC UserInfo (OpenID Connect Core §5.3) for a valid access token carrying ``openid``."""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc6750 import BearerTokenValidator
from flask import Blueprint, jsonify

from ..extensions import csrf
from ..oauth2.introspection import find_token
from ..oauth2.tokens import user_info_claims
from ..services.authorization import Grant, UserAuthorization

bp = Blueprint("userinfo", __name__)


class AccessTokenValidator(BearerTokenValidator):
    """Our signed JWTs, not revoked, not expired."""

    def authenticate_token(self, token_string):
        token = find_token(token_string, "access_token")
        return token if token is not None and token.kind == "access_token" else None


require_token = ResourceProtector()
require_token.register_token_validator(AccessTokenValidator())


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
@require_token("openid")
def userinfo():
    token = current_token
    claims = token.claims
    user = UserAuthorization(subject=token.subject, grant=Grant([], list(claims.get("wlcg.groups") or [])))
    response = jsonify(user_info_claims(user, token.scope))
    response.headers["Cache-Control"] = "no-store"
    return response
