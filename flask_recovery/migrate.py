"""Running the extension's Alembic branch (label ``recovery``) on the host's engine.

``flask recovery init-db`` calls :func:`upgrade`: it creates the tables on an empty
database and upgrades an existing one; running it twice does nothing the second time.
The branch keeps its own version table, ``recovery_alembic_version``, so it never
collides with the host's own migrations.
"""

from __future__ import annotations

import importlib.util
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

VERSION_TABLE = "recovery_alembic_version"
BRANCH = "recovery"


def migrations_dir() -> str:
    """Where the migration scripts are: inside the installed package, or the source tree."""
    spec = importlib.util.find_spec("flask_recovery.migrations")
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


def alembic_config(connection=None) -> Config:
    """An Alembic ``Config`` for the branch, bound to ``connection`` if given."""
    config = Config()
    location = migrations_dir()
    config.set_main_option("script_location", location)
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.path.join(location, "versions"))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = f"{BRANCH}@head") -> None:
    """Create or upgrade the extension's tables to ``revision``."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the extension's tables (``base`` drops them all)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str:
    """The newest revision of the branch."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
