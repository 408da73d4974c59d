"""Is the database at the schema this code was written for? (docs/configuration.md, "Upgrades")

The web process answers 503 while the database's Alembic revision is behind the migrations
shipped with the code (an upgrade whose ``scitoken-issuer db upgrade`` has not run yet), and
``/readyz`` names it. A revision this code does not know is a newer release's, migrated by its
release step during a rolling upgrade: migrations add, so the older code keeps serving.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)

#: the migrations shipped with this code
MIGRATIONS = str(Path(__file__).resolve().parents[1] / "migrations")

UPGRADE = "run `scitoken-issuer db upgrade`"


class SchemaState:
    """Compares the database's revision with the migrations' head; once it is current (or newer),
    that is remembered and no further query is made in this process."""

    def __init__(self, migrations_dir: str = MIGRATIONS):
        self.migrations_dir = migrations_dir
        self.current = False
        self._script: ScriptDirectory | None = None
        self._reported: str | None = None

    @property
    def script(self) -> ScriptDirectory:
        if self._script is None:
            self._script = ScriptDirectory(self.migrations_dir)
        return self._script

    def problem(self, connection: Connection) -> str | None:
        """None when the schema serves this code; else one sentence for the operator (logged once
        per process and state)."""
        if self.current:
            return None
        revision = MigrationContext.configure(connection).get_current_revision()
        head = self.script.get_current_head()
        if revision is None:
            problem = f"the database has no schema yet (this code needs {head}): {UPGRADE}"
        elif revision == head or not self._known(revision):
            self.current = True
            if revision != head:
                logger.info("database schema %s is newer than this code's %s; serving", revision, head)
            return None
        else:
            problem = f"the database schema is at {revision}, behind this code's {head}: {UPGRADE}"
        if problem != self._reported:
            self._reported = problem
            logger.error("%s; answering 503 until then", problem)
        return problem

    def _known(self, revision: str) -> bool:
        try:
            return self.script.get_revision(revision) is not None
        except CommandError:
            return False
