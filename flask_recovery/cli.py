"""``flask recovery ...``: operations for the host's server (cron, deploys, support).

Commands run with the host app's context; ``ctx.obj`` is the :class:`Recovery` object.
Whoever can run ``flask`` on the server is an operator: the shell is the authorization.
"""

from __future__ import annotations

import sys

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


@recovery_cli.command("send-notifications")
@click.option(
    "--limit",
    type=click.IntRange(1, 10000),
    default=100,
    show_default=True,
    help="Send at most this many mails in this run.",
)
@click.option("--dry-run", is_flag=True, help="Only count what is due; send nothing.")
def send_notifications(limit: int, dry_run: bool) -> None:
    """Send due staff mail (requests for approval) to RECOVERY_MANAGER_EMAILS."""
    from .notifications import send_pending_notifications

    result = send_pending_notifications(limit=limit, dry_run=dry_run)
    if dry_run:
        click.echo(f"{result.sent} staff mails due (dry run: nothing sent).")
    else:
        click.echo(
            f"sent {result.sent}, retry later {result.retry}, failed {result.failed}, "
            f"skipped {result.skipped} (no recipients)."
        )


@recovery_cli.command("send-followups")
@click.option(
    "--limit",
    type=click.IntRange(1, 100000),
    default=500,
    show_default=True,
    help="Send at most this many check-in mails in this run.",
)
@click.option("--dry-run", is_flag=True, help="Only count what is due; plan nothing, send nothing.")
def send_followups(limit: int, dry_run: bool) -> None:
    """Plan and send the due post-visit check-in mails (run it from cron every few minutes)."""
    from .followups import send_due_followups

    if not (current_app.config["RECOVERY_BASE_URL"] or current_app.config.get("SERVER_NAME")):
        raise click.ClickException("set RECOVERY_BASE_URL (the site's address) so the links in the mail work")
    if not current_app.extensions["mail"].default_sender:
        raise click.ClickException("set MAIL_DEFAULT_SENDER: check-in mail needs a sender address")
    if dry_run:
        result = send_due_followups(limit=limit, dry_run=True)
        click.echo(f"{result.due} check-in mails due (dry run: nothing planned or sent).")
        return
    if sys.stdout.isatty():
        with click.progressbar(length=limit, label="sending check-ins") as bar:
            result = send_due_followups(limit=limit, progress=bar.update)
    else:
        result = send_due_followups(limit=limit)
    for line in result.errors[:20]:
        click.echo(line, err=True)
    click.echo(result.summary())


@recovery_cli.command("forget-client")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget_client(client_id: str, yes: bool) -> None:
    """Erase a client's personal data (names, addresses, notes about her); keep anonymous figures."""
    from .extension import get_recovery

    client_id = client_id.strip()
    if not client_id or len(client_id) > 64:
        raise click.BadParameter("a client id is 1 to 64 characters", param_hint="CLIENT_ID")
    if not yes:
        click.confirm(f"Erase everything that names client {client_id!r}? This cannot be undone", abort=True)
    result = get_recovery().forget_client(client_id)
    click.echo(result.summary())


@recovery_cli.command("export-client")
@click.argument("client_id")
@click.option(
    "--output", type=click.File("w", encoding="utf-8"), default="-", help="Write to this file (default: stdout)."
)
def export_client(client_id: str, output) -> None:
    """Print everything the extension holds about a client as JSON (the right of access)."""
    import json

    from .extension import get_recovery

    client_id = client_id.strip()
    if not client_id or len(client_id) > 64:
        raise click.BadParameter("a client id is 1 to 64 characters", param_hint="CLIENT_ID")
    data = get_recovery().export_client(client_id)
    json.dump(data, output, ensure_ascii=False, indent=2)
    output.write("\n")
