"""scitoken-issuer: an OAuth 2.0 / OpenID Connect issuer of SciTokens and WLCG access tokens."""

__version__ = "0.1.0"
