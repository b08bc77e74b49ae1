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


@recovery_cli.result_callback()
def _commit(*_results: object, **_options: object) -> None:
    """A command that finished without an error commits its work once (flask_recovery.unit);
    one that failed leaves it to the app context's teardown, which rolls it back."""
    from .unit import finish

    finish(True)


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
    from .proxies import get_recovery

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
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    help="Write to this file, readable by its owner only (default: stdout).",
)
def export_client(client_id: str, output: str) -> None:
    """Print everything the extension holds about a client as JSON (the right of access)."""
    import json
    import os

    from .proxies import get_recovery

    client_id = client_id.strip()
    if not client_id or len(client_id) > 64:
        raise click.BadParameter("a client id is 1 to 64 characters", param_hint="CLIENT_ID")
    data = get_recovery().export_client(client_id)
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    # personal data: created 0600, and an existing file is narrowed to 0600 before it is written
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from error
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fd, 0o600)
        fh.write(text)


def _date_option(ctx: click.Context, param: click.Parameter, value: str | None):
    """Parse ``--since`` / ``--until``; a bad date is a click error naming the option."""
    from .domain.stats import parse_date
    from .errors import InvalidInput

    if value is None:
        return None
    try:
        return parse_date(value, param.name)
    except InvalidInput as error:
        raise click.BadParameter(f"{value!r}: {error.message}", ctx=ctx, param=param) from None


@recovery_cli.command("stats")
@click.option("--since", callback=_date_option, metavar="DATE", help="First day (YYYY-MM-DD); default: 90 days ago.")
@click.option("--until", callback=_date_option, metavar="DATE", help="Last day (YYYY-MM-DD); default: today.")
@click.option("--location", help="Only this location.")
@click.option("--category", help="Only this incident category.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True, help="Output."
)
@click.option(
    "--figure",
    type=click.Choice(["all", "weekly", "monthly", "speed", "open_cases", "spend", "followups", "returns"]),
    default="all",
    show_default=True,
    help="Only this figure (table and csv).",
)
@click.option(
    "--sync-visits",
    is_flag=True,
    help="First copy the host's bookings of the period (and the 90 days after) from the bookings_between loader.",
)
def stats_command(since, until, location, category, fmt: str, figure: str, sync_visits: bool) -> None:
    """The KPI journal's figures: incidents, speed, open cases, spend, check-ins, return rates."""
    import json
    from datetime import timedelta

    from .domain import stats
    from .errors import InvalidInput
    from .models import utcnow
    from .proxies import get_recovery
    from .vocabulary import category_label

    recovery = get_recovery()
    try:
        period = stats.make_period(since, until, location=location, category=category)
    except InvalidInput as error:
        raise click.BadParameter(error.message, param_hint=f"'--{error.field}'") from None
    if sync_visits:
        if recovery._bookings_between is None:
            raise click.ClickException("--sync-visits needs a loader registered with @recovery.bookings_between")
        end = min(period.end + timedelta(days=max(stats.RETURN_WINDOWS)), utcnow() + timedelta(days=366))
        seen = stats.sync_visits(recovery.session, recovery._bookings_between, period.start, end)
        click.echo(f"synced {seen} bookings into recovery_visits.", err=True)
    data = stats.journal(recovery.session, period)
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    tables = stats.tables(data, labels=category_label)
    chosen = list(tables.values()) if figure == "all" else [tables[figure]]
    if fmt == "csv":
        click.echo(stats.to_csv(chosen, long=figure == "all"), nl=False)
        return
    where = ", ".join(filter(None, [period.location, period.category])) or "all locations and categories"
    click.echo(f"Recovery journal {period.since} .. {period.until} ({period.timezone}; {where})")
    categories = data["incidents"]["categories"]
    for key_name, unit in (("weekly", "week"), ("monthly", "month")):  # one row per week, a column per category
        if figure in ("all", key_name):
            table = tables[key_name]
            wide = stats.Table(key_name, table.title, [unit, *categories, "total"], [])
            for period_row in data["incidents"]["weeks" if unit == "week" else "months"]:
                counts = period_row["counts"]
                wide.rows.append([period_row[unit], *(counts.get(c, 0) for c in categories), period_row["total"]])
            chosen[chosen.index(table)] = wide
    for table in chosen:
        click.echo("")
        click.echo(table.title)
        cells = [table.columns] + [["" if v is None else str(v) for v in row] for row in table.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
        for number, row in enumerate(cells):
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
            if number == 0:
                click.echo("  ".join("-" * width for width in widths))
        if not table.rows:
            click.echo("(nothing)")


def _when(moment, now) -> str:
    """``moment`` (aware) in ``RECOVERY_TIMEZONE`` with how far from ``now`` it is."""
    from zoneinfo import ZoneInfo

    tz_name = current_app.config["RECOVERY_TIMEZONE"]
    local = moment.astimezone(ZoneInfo(tz_name)).strftime("%Y-%m-%d %H:%M")
    seconds = int((moment - now).total_seconds())
    minutes = abs(seconds) // 60
    span = (
        f"{minutes // 1440} d {minutes % 1440 // 60} h" if minutes >= 1440 else f"{minutes // 60} h {minutes % 60} min"
    )
    return f"{local} {tz_name} ({'in ' + span if seconds > 0 else span + ' ago'})"


def _address(value) -> str:
    """An address as the mail shows it: ``Name <address>`` (names are plain words already)."""
    if isinstance(value, tuple | list):
        return f"{value[0]} <{value[1]}>" if value[0] else str(value[1])
    return str(value) if value else ""


@recovery_cli.command("preview-followup")
@click.argument("booking_id")
@click.option(
    "--kind",
    type=click.Choice(["checkin", "reminder"]),
    default="checkin",
    show_default=True,
    help="The check-in itself, or the reminder that follows an unanswered one.",
)
@click.option("--locale", help="Render in this language instead of the client's (one of RECOVERY_LOCALES).")
@click.option("--html", "show_html", is_flag=True, help="Print the HTML part too.")
def preview_followup(booking_id: str, kind: str, locale: str | None, show_html: bool) -> None:
    """Print the check-in mail BOOKING_ID would get, and when; nothing is sent or stored.

    Computed now with the planner's rules, also for a mail due only tomorrow or not planned
    yet. The links show {token} where each mail carries its own signed token.
    """
    from .errors import NotFound
    from .followup_mail import TOKEN_PLACEHOLDER, NoFollowUp
    from .followup_mail import preview_followup as make_preview
    from .models import utcnow

    booking_id = booking_id.strip()
    config = current_app.config
    locales = list(config["RECOVERY_LOCALES"])
    if locale is not None:
        from .i18n import supported_locale

        chosen = supported_locale(locale, locales)
        if chosen is None:
            raise click.BadParameter(f"{locale!r} is not one of RECOVERY_LOCALES ({', '.join(locales)})")
        locale = chosen
    if not (config["RECOVERY_BASE_URL"] or config.get("SERVER_NAME")):
        raise click.ClickException("set RECOVERY_BASE_URL (the site's address) so the links in the mail work")
    now = utcnow()
    what = "check-in" if kind == "checkin" else "reminder"
    try:
        preview = make_preview(booking_id, kind=kind, locale=locale, now=now)
    except NotFound:
        raise click.BadParameter(
            f"no booking {booking_id!r}: the host's booking loader does not know it", param_hint="BOOKING_ID"
        ) from None
    except NoFollowUp as refusal:
        raise click.ClickException(f"booking {booking_id!r} gets no {what}: {refusal.reason}") from None
    message = preview.message
    incident = preview.incident
    case = (
        f"case {incident.id}: {incident.category}, {incident.status}" if incident is not None else "an ordinary visit"
    )
    click.echo(f"Preview of the {what} for booking {preview.booking.id} ({case}); nothing was sent or stored.")
    if preview.state == "sent":
        click.echo(f"Sent:     {_when(preview.due_at, now)}")
    elif preview.due_at <= now:
        click.echo(f"Due:      now (since {_when(preview.due_at, now)}): the next send-followups run sends it")
    else:
        click.echo(f"Due:      {_when(preview.due_at, now)}: the first send-followups run from then sends it")
    for condition in preview.conditions:
        click.echo(f"          {condition}")
    click.echo(f"State:    {preview.state}")
    sender = message.sender or current_app.extensions["mail"].default_sender
    click.echo(
        f"From:     {_address(sender) or '(none: set MAIL_DEFAULT_SENDER, send-followups refuses to send without it)'}"
    )
    click.echo(f"To:       {', '.join(_address(r) for r in message.recipients)}")
    click.echo(f"Subject:  {message.subject}")
    click.echo(f"Language: {preview.locale}")
    for name, value in (message.extra_headers or {}).items():
        click.echo(f"{name}: {value}")
    click.echo("")
    click.echo(message.body.rstrip("\n"))
    click.echo("")
    if show_html:
        click.echo(message.html.rstrip("\n"))
        click.echo("")
    click.echo(f"Links ({TOKEN_PLACEHOLDER} stands for the signed token each mail gets):")
    click.echo(f"  All good:        {preview.links['good']}")
    click.echo(f"  Still not right: {preview.links['not_right']}")
    click.echo(f"  Unsubscribe:     {preview.links['unsubscribe']}")
