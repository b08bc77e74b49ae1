"""``flask --app example_app demo-followups``: the whole follow-up loop on one laptop.

1. Makes sure there is something to follow up: three of the demo's completed visits get a
   resolved incident, recorded through the extension's own rules (``domain.record_incident``,
   ``grant_compensation``, ``resolve_incident``) by Марина, the demo manager. A visit that
   already has an incident (from an earlier run, or one you recorded at the desk) is left
   as it is, so running the command again duplicates nothing.
2. Runs the real dispatcher, ``send_due_followups``, with its clock moved forward by
   ``RECOVERY_FOLLOWUP_DELAY`` plus one day. The product's rules stay as they are (the delay
   and the local sending window still apply); the demo only does not wait for them. What
   is stored is real: rows are planned, leased and marked ``sent`` as in production.
3. Delivers the mail to an SMTP sink it starts itself (aiosmtpd, on 127.0.0.1 and a free
   port; the app's ``MAIL_*`` settings are not used, nothing leaves this machine), or with
   ``--console`` to Flask-Mail's own recorder (no SMTP at all). Pending staff mail (the
   managers' alert after a "Still not right" answer, requests for approval) goes the same way.
4. Prints every mail (To, Subject, the plain-text body with the answer links, which point
   at ``RECOVERY_BASE_URL``) and saves it as an ``.eml`` file in ``SALON_MAIL_DIR``
   (``instance/mail/`` by default).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import click
from flask import Flask, current_app

from flask_recovery import domain
from flask_recovery.followups import send_due_followups
from flask_recovery.models import utcnow
from flask_recovery.notifications import send_pending_notifications

from .integration import recovery
from .staff import DEMO_STAFF

#: Who records and resolves the demo's cases: the manager, whose authority has no limit.
DEMO_STAFF_KEY = "marina"


@dataclass(frozen=True)
class DemoCase:
    """One completed demo visit that gets a resolved incident."""

    booking_id: str
    category: str
    severity: str
    description: str  # internal: never shown to the client
    corrective_action: str  # shown to the client in her language ("What will change")
    percent_off: int | None = None  # a percent_discount granted before resolving


DEMO_CASES = (
    DemoCase(
        "1",
        "late",
        "major",
        "Начали на 25 минут позже: предыдущая клиентка задержалась.",
        "Между длинными процедурами мы теперь оставляем 15 минут.",
        percent_off=10,
    ),
    DemoCase(
        "6",
        "result",
        "major",
        "Покрытие на двух ногтях отслоилось на следующий день.",
        "Elena now checks every nail under the lamp before you leave, and we changed our base coat.",
        percent_off=20,
    ),
    DemoCase(
        "8",
        "result",
        "minor",
        "Чёлка вышла короче, чем договаривались.",
        "Перед стрижкой мастер показывает длину на фото и уточняет её ещё раз.",
    ),
)


# -- 1. something to follow up --------------------------------------------------------


def ensure_cases(echo: Callable[[str], None]) -> None:
    """Record and resolve the demo cases that do not exist yet; say what was done."""
    session = recovery.session
    staff = DEMO_STAFF[DEMO_STAFF_KEY]
    echo(f"Demo cases (recorded and resolved by {staff.name}, {staff.role}):")
    for case in DEMO_CASES:
        booking = recovery.load_booking(case.booking_id)
        if booking is None:
            echo(f"  booking {case.booking_id}: not found (run `flask --app example_app seed`), skipped")
            continue
        who = f"  booking {booking.id}, {booking.client_name}"
        existing = domain.incidents_for_booking(session, booking.id)
        if existing:
            listed = ", ".join(f"#{incident.id} {incident.status}" for incident in existing)
            echo(f"{who}: already has incident {listed}; left as it is")
            continue
        if booking.status != "completed":
            echo(f"{who}: the visit is {booking.status}, not completed; skipped")
            continue
        incident = domain.record_incident(
            session,
            booking,
            staff,
            category=case.category,
            severity=case.severity,
            description=case.description,
            corrective_action=case.corrective_action,
        )
        done = f"recorded incident #{incident.id} ({case.category}, {case.severity})"
        if case.percent_off:
            compensation, _created = domain.grant_compensation(
                session,
                incident.id,
                recovery.load_booking,
                staff,
                kind="percent_discount",
                percent=case.percent_off,
            )
            done += f", granted {case.percent_off}% off (voucher {compensation.voucher_code})"
        domain.resolve_incident(session, incident.id, staff)
        echo(f"{who}: {done}, resolved")


# -- 2. the demo's clock --------------------------------------------------------------


def demo_clock() -> datetime:
    """Now plus ``RECOVERY_FOLLOWUP_DELAY`` plus a day: past any check-in's delay and window."""
    return utcnow() + current_app.config["RECOVERY_FOLLOWUP_DELAY"] + timedelta(days=1)


# -- 3. where the mail goes -----------------------------------------------------------


class _Sink:
    """aiosmtpd handler: keeps the raw bytes of every message it accepts."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's API)
        with self.lock:
            self.received.append(envelope.original_content or envelope.content)
        return "250 OK: kept by the demo sink"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_MAIL_SETTINGS = ("server", "port", "use_tls", "use_ssl", "username", "password", "suppress")


@contextmanager
def _mail_settings(app: Flask, **values: Any) -> Iterator[None]:
    """Point the app's Flask-Mail state elsewhere for the block (it reads MAIL_* only at init)."""
    state = app.extensions["mail"]
    saved = {name: getattr(state, name) for name in _MAIL_SETTINGS}
    for name, value in values.items():
        setattr(state, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(state, name, value)


@contextmanager
def smtp_sink(app: Flask) -> Iterator[tuple[str, list[bytes]]]:
    """Start an SMTP server on 127.0.0.1 and a free port, and send the app's mail to it.

    Yields ``(where, received)``; ``received`` fills with the raw messages as they arrive.
    """
    from aiosmtpd.controller import Controller

    sink = _Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = dict(use_tls=False, use_ssl=False, username=None, password=None, suppress=False)
        with _mail_settings(app, server="127.0.0.1", port=port, **settings):
            yield f"a local SMTP sink on 127.0.0.1:{port}", sink.received
    finally:
        controller.stop()


@contextmanager
def console_outbox(app: Flask) -> Iterator[tuple[str, list[bytes]]]:
    """No SMTP: Flask-Mail suppresses sending and its recorder keeps each message."""
    received: list[bytes] = []
    with _mail_settings(app, suppress=True), app.extensions["mail"].record_messages() as outbox:
        yield "the console (no SMTP; Flask-Mail records the messages)", received
        received.extend(message.as_bytes() for message in outbox)


# -- 4. showing the mail --------------------------------------------------------------


def _plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content().rstrip() if part is not None else "(no plain-text part)"


def _file_name(number: int, message: EmailMessage, stamp: str) -> str:
    ident = (message.get("Message-ID") or "").strip("<> ").split("@")[0]
    # a check-in's Message-ID names its row (recovery-followup-3-checkin); staff mail has a random one
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", ident)[:60] if ident.startswith("recovery-") else "staff"
    return f"{stamp}-{number:02d}-{slug}.eml"


def show_mail(received: list[bytes], mail_dir: str, echo: Callable[[str], None]) -> list[str]:
    """Print each message (To, Subject, plain text) and save it as ``.eml``; returns the paths."""
    os.makedirs(mail_dir, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = []
    for number, raw in enumerate(received, start=1):
        message = message_from_bytes(raw, policy=policy.default)
        path = os.path.join(mail_dir, _file_name(number, message, stamp))
        with open(path, "wb") as file:
            file.write(raw)
        paths.append(path)
        echo("")
        echo(f"===== mail {number} of {len(received)} " + "=" * 50)
        echo(f"To:      {message.get('To', '')}")
        echo(f"Subject: {message.get('Subject', '')}")
        echo(f"Saved:   {path}")
        echo("-" * 70)
        echo(_plain_text(message))
    return paths


# -- the command ----------------------------------------------------------------------


def run_demo(app: Flask, console: bool, echo: Callable[[str], None]) -> None:
    """Everything ``demo-followups`` does, in the current app context."""
    ensure_cases(echo)
    now = demo_clock()
    hours = round((now - utcnow()).total_seconds() / 3600)
    if console:
        outlet = console_outbox
    else:
        try:
            import aiosmtpd.controller  # noqa: F401
        except ImportError:
            echo("aiosmtpd is not installed (pip install aiosmtpd), so the mail goes to the console.")
            outlet = console_outbox
        else:
            outlet = smtp_sink
    with outlet(app) as (where, received):
        echo("")
        echo(f"Sending to {where}.")
        echo(f"The dispatcher's clock is {hours} hours ahead ({now:%Y-%m-%d %H:%M} UTC), so the check-ins are due.")
        followups = send_due_followups(now=now)
        for line in followups.errors:
            echo(f"  {line}")
        echo(f"Check-ins: {followups.summary()}")
        staff_mail = send_pending_notifications()
        echo(
            f"Staff mail: sent {staff_mail.sent}, retry later {staff_mail.retry}, failed {staff_mail.failed}, "
            f"skipped {staff_mail.skipped}"
        )
    if not received:
        echo("")
        echo("Nothing was due: no new mail (each check-in goes once; it was sent on an earlier run).")
        echo("Resolve an incident at the desk, or start over: flask --app example_app seed --reset-recovery")
        return
    show_mail(received, app.config["SALON_MAIL_DIR"], echo)
    echo("")
    echo(f"{len(received)} mail(s) saved in {app.config['SALON_MAIL_DIR']}.")
    echo(
        f"Start the site (python -m example_app) and open an answer link above: they point at "
        f"{app.config['RECOVERY_BASE_URL']}."
    )


def register(app: Flask) -> None:
    """Add ``flask demo-followups`` to the app's CLI."""

    @app.cli.command("demo-followups")
    @click.option("--console", is_flag=True, help="Do not start an SMTP sink; record the mail and print it.")
    def demo_followups(console: bool) -> None:
        """Make due follow-ups for a few demo visits, send them to a local sink and print them."""
        run_demo(current_app._get_current_object(), console, click.echo)
