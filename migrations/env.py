"""Alembic environment for the ``recovery`` branch.

Run through :func:`flask_recovery.migrate.upgrade`, which passes a connection in
``config.attributes["connection"]``. Run with the plain ``alembic`` command, it reads
``sqlalchemy.url`` from the config instead.
"""

from alembic import context
from sqlalchemy import engine_from_config, pool

from flask_recovery.migrate import VERSION_TABLE
from flask_recovery.models import metadata

config = context.config


def _include_name(name, type_, parent_names):
    if type_ == "table":
        return name is not None and name.startswith("recovery_") and name != VERSION_TABLE
    return True


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.begin() as conn:
        _run(conn)
