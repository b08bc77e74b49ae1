"""``flask recovery ...``: operations for the host's server (cron, deploys, support).

Commands run with the host app's context; ``ctx.obj`` is the :class:`Recovery` object.
Whoever can run ``flask`` on the server is an operator: the shell is the authorization.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from . import migrate

recovery_cli = AppGroup("recovery", help="Service recovery: database setup and operations.")


@recovery_cli.command("init-db")
@click.option("--revision", default=f"{migrate.BRANCH}@head", show_default=True, help="Alembic revision to upgrade to.")
def init_db(revision: str) -> None:
    """Create or upgrade the extension's tables (Alembic branch 'recovery')."""
    engine = current_app.extensions["recovery"].db.engine
    before = migrate.current_revision(engine)
    try:
        migrate.upgrade(engine, revision)
    except Exception as error:  # alembic raises many kinds; show one clear line
        raise click.ClickException(f"migration to {revision} failed: {error}") from error
    after = migrate.current_revision(engine)
    if before == after:
        click.echo(f"recovery tables already at {after}; nothing to do.")
    else:
        click.echo(f"recovery tables upgraded from {before or 'empty'} to {after}.")
