"""HTTP endpoints: one thin blueprint per endpoint group, nested under ``oauth`` (``/auth``)."""

from __future__ import annotations

from flask import Blueprint, Flask

from . import (authorize, device, errors, health, introspection, jwks, login, openapi, registration, scopes,
               token, userinfo, well_known)


def register_blueprints(app: Flask) -> None:
    oauth = Blueprint("oauth", __name__, url_prefix="/auth")
    for child in (jwks.bp, token.bp, registration.bp, introspection.bp, authorize.bp, login.bp, userinfo.bp, device.bp,
                  device.api, scopes.bp):
        oauth.register_blueprint(child)
    app.register_blueprint(oauth)
    app.register_blueprint(well_known.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    errors.init_error_handlers(app)
