"""The PostgreSQL fixture serves a real database (docs/flows.md: PostgreSQL in production)."""

from __future__ import annotations

import sqlalchemy as sa


def test_connect_and_select(postgres_url):
    """The URL works with SQLAlchemy + psycopg and reaches PostgreSQL 15 or later."""
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert conn.execute(sa.text("show server_version_num")).scalar() >= "150000"
    finally:
        engine.dispose()
