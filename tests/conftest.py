"""Shared fixtures. Service fixtures (redis, slapd, postgres, upstream IdP, celery) live in tests/support."""

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.slapd",
    "tests.support.postgres",
    "tests.support.upstream_idp",
]
