"""OIDC UserInfo (OpenID Connect Core §5.3) for a valid access token carrying ``openid``: an
RFC 6750 protected resource (:mod:`scitoken_issuer.oauth2.resource`)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..extensions import csrf, resource_protector, runtime
from ..oauth2.tokens import user_info_claims
from ..services.authorization import Grant, UserAuthorization
from ..services.users import directory_claims

bp = Blueprint("userinfo", __name__)


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo():
    token = resource_protector().require("openid")
    claims = token.claims
    user = UserAuthorization(subject=token.subject, claims=directory_claims(runtime().groups.source, token.subject),
                             grant=Grant([], list(claims.get("wlcg.groups") or [])))
    response = jsonify(user_info_claims(user, token.scope))
    response.headers["Cache-Control"] = "no-store"
    return response
