"""A host app for dispatcher subprocesses (fault tests, the Celery test, the benchmark).

Configured from the environment, so a test can start it as a separate process:

- ``RECOVERY_DISPATCH_DB``: the database URL (required);
- ``RECOVERY_DISPATCH_SMTP_PORT``: the SMTP server's port on 127.0.0.1;
- ``RECOVERY_DISPATCH_BASE_URL``: ``RECOVERY_BASE_URL`` (default ``https://salon.example.com``);
- ``RECOVERY_DISPATCH_BROKER`` / ``RECOVERY_DISPATCH_QUEUE``: Celery's Redis broker (also its
  result backend) and the one queue the worker consumes, for ``celery -A tests.dispatcher_app:celery``.

The host's booking loader knows no bookings (it returns ``None``), as for a booking the
host has since archived: the dispatcher renders each mail from its ``FollowUp`` row.

Entry points:

- ``flask --app tests.dispatcher_app:create_app recovery send-followups`` (the cron job);
- ``python -m tests.dispatcher_app dispatch [--limit N] [--batch N] [--now-offset S] [--wait-go]``:
  one ``send_due_followups`` run; prints ``ready`` once connected (and with ``--wait-go``
  waits for a line on stdin, so several processes start together), then the result as JSON;
- ``python -m tests.dispatcher_app claim --limit N``: lease N due rows, print their ids as
  JSON, then sleep (a dispatcher that dies after claiming: kill it with SIGKILL);
- ``python -m tests.dispatcher_app sink [--delay S]``: a counting aiosmtpd sink in a process
  of its own; prints its port, and on stdin EOF its counts as JSON.

:class:`Sink` and :func:`start_sink` are the SMTP server the tests and the benchmark use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import Recovery

BASE_URL = "https://salon.example.com"
SENDER = "Velvet salon <hello@salon.example.com>"
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def config_from_env() -> dict[str, Any]:
    """The app config for the database and SMTP port named in the environment."""
    url = os.environ["RECOVERY_DISPATCH_DB"]
    engine_options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_options["connect_args"] = {"timeout": 60}  # four writers queue on the file lock
    return {
        "SECRET_KEY": "dispatcher-secret",
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": int(os.environ.get("RECOVERY_DISPATCH_SMTP_PORT", "25")),
        "MAIL_DEFAULT_SENDER": SENDER,
        "MAIL_SUPPRESS_SEND": False,
        "RECOVERY_BASE_URL": os.environ.get("RECOVERY_DISPATCH_BASE_URL", BASE_URL),
        "RECOVERY_FOLLOWUP_WINDOW": (0, 24),
        "RECOVERY_FOLLOWUP_DELAY": timedelta(0),
        "RECOVERY_FOLLOWUP_MIN_INTERVAL": timedelta(0),
    }


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The host app (``FLASK_APP=tests.dispatcher_app:create_app``)."""
    app = Flask("dispatcher_app")
    app.config.update(config_from_env() if config is None else config)
    db = SQLAlchemy()
    db.init_app(app)
    recovery = Recovery()
    recovery.init_app(app, db=db)
    recovery.booking_loader(lambda booking_id: None)  # archived: mail comes from the row
    recovery.staff_loader(lambda: None)
    app.db = db
    app.recovery = recovery
    return app


# -- Celery, as Flask documents it (tasks run inside an app context) -----------------


def make_celery(app: Flask):
    """A Celery app on ``RECOVERY_DISPATCH_BROKER`` whose tasks run in ``app``'s context."""
    from celery import Celery, Task

    import flask_recovery.tasks  # noqa: F401 (registers the shared task)

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                finally:
                    app.db.session.remove()

    broker = os.environ["RECOVERY_DISPATCH_BROKER"]
    queue = os.environ.get("RECOVERY_DISPATCH_QUEUE", "recovery")
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=broker,
        result_backend=broker,
        task_default_queue=queue,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


_celery = None


def __getattr__(name: str):
    """``tests.dispatcher_app:celery`` is built on first use (only the worker needs a broker)."""
    global _celery
    if name == "celery":
        if _celery is None:
            _celery = make_celery(create_app())
        return _celery
    raise AttributeError(name)


# -- a real SMTP server ---------------------------------------------------------------


class Sink:
    """An aiosmtpd handler that records what it accepts.

    ``delay``: seconds before it answers each message (other connections go on meanwhile).
    Recipients whose local part starts with ``bounce`` are refused with 550 at RCPT; those
    starting with ``later`` get 451 at RCPT the first time and are accepted after that.
    ``accepted`` holds ``(message_id, recipient)`` for every message answered 250, and
    ``refused`` ``(code, recipient)`` for every refusal. With ``hold_at = n`` the n-th
    message is never answered (``held`` is set when it arrives): kill the client then.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.hold_at: int | None = None
        self.held = threading.Event()
        self.data_commands = 0
        self.accepted: list[tuple[str, str]] = []
        self.refused: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self._deferred: set[str] = set()
        self.port = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        local = address.split("@")[0].lower()
        if local.startswith("bounce"):
            with self.lock:
                self.refused.append((550, address))
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("later"):
            with self.lock:
                first = address not in self._deferred
                self._deferred.add(address)
                if first:
                    self.refused.append((451, address))
            if first:
                return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        with self.lock:
            self.data_commands += 1
            hold = self.data_commands == self.hold_at
        if hold:
            self.held.set()
            await asyncio.sleep(3600)  # cancelled when the client's connection goes
        if self.delay:
            await asyncio.sleep(self.delay)
        found = _MESSAGE_ID.search(envelope.original_content or envelope.content)
        message_id = found.group(1).decode() if found else ""
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.accepted.append((message_id, rcpt))
        return "250 OK"

    def counts(self) -> dict[str, Any]:
        """How many messages arrived, how many distinct, and the duplicated Message-IDs."""
        with self.lock:
            ids = Counter(message_id for message_id, _ in self.accepted)
            return {
                "messages": len(self.accepted),
                "distinct": len(ids),
                "duplicates": sorted(m for m, n in ids.items() if n > 1),
                "refused": len(self.refused),
            }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_sink(delay: float = 0.0):
    """Start a :class:`Sink` on a free port of 127.0.0.1; returns ``(controller, sink)``."""
    from aiosmtpd.controller import Controller

    sink = Sink(delay)
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    return controller, sink


# -- subprocess entry points --------------------------------------------------------------


def _dispatch(args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from flask_recovery.followups import send_due_followups

    app = create_app()
    with app.app_context():
        app.db.session.execute(text("SELECT 1"))  # connected before the start line
        app.db.session.commit()
        print("ready", flush=True)
        if args.wait_go:
            sys.stdin.readline()
        now = datetime.now(UTC) + timedelta(seconds=args.now_offset)
        started = time.perf_counter()
        result = send_due_followups(limit=args.limit, batch_size=args.batch, now=now)
        elapsed = time.perf_counter() - started
        app.db.session.remove()
        app.db.engine.dispose()
    report = {
        "planned": result.planned,
        "sent": result.sent,
        "retry": result.retry,
        "failed": result.failed,
        "errors": result.errors,
        "seconds": elapsed,
    }
    print(json.dumps(report), flush=True)


def _claim(args: argparse.Namespace) -> None:
    from flask_recovery.followups import claim

    app = create_app()
    with app.app_context():
        token, ids = claim(app.db.session, args.limit, datetime.now(UTC))
        print(json.dumps({"token": token, "ids": ids}), flush=True)
        time.sleep(3600)  # "sending": the test kills us here


def _sink(args: argparse.Namespace) -> None:
    controller, sink = start_sink(args.delay)
    print(sink.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    time.sleep(0.2)  # the last answers are on their way
    try:
        print(json.dumps(sink.counts()), flush=True)
    except BrokenPipeError:  # the parent is gone
        pass
    controller.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="flask-recovery dispatcher helper")
    commands = parser.add_subparsers(dest="command", required=True)
    dispatch = commands.add_parser("dispatch", help="one send_due_followups run")
    dispatch.add_argument("--limit", type=int, default=100_000)
    dispatch.add_argument("--batch", type=int, default=50)
    dispatch.add_argument("--now-offset", type=float, default=0.0, help="seconds added to the clock")
    dispatch.add_argument("--wait-go", action="store_true", help="wait for a line on stdin before sending")
    dispatch.set_defaults(run=_dispatch)
    claim = commands.add_parser("claim", help="lease rows, then sleep until killed")
    claim.add_argument("--limit", type=int, default=50)
    claim.set_defaults(run=_claim)
    sink = commands.add_parser("sink", help="a counting SMTP sink")
    sink.add_argument("--delay", type=float, default=0.0)
    sink.set_defaults(run=_sink)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
