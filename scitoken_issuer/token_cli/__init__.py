"""``scitoken-token``: a researcher's command-line client for any RFC 8628 issuer (docs/researchers.md).

It gets an access token through the device flow, keeps the refresh token private, renews
silently, and writes the access token where WLCG Bearer Token Discovery looks. It imports only
the standard library and ``requests`` (``segno`` for a QR code, when installed), so it runs on
a login node without the issuer's server dependencies.
"""
