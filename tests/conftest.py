"""Fixtures: app -> db -> recovery -> client/runner, a real SMTP sink, a signal recorder.

Every test that uses ``app`` runs twice: on a SQLite file and on PostgreSQL. The
PostgreSQL server comes from ``RECOVERY_TEST_POSTGRES_URL`` (default: the local server at
127.0.0.1:5432); an unreachable server fails the run. Set ``RECOVERY_TEST_SKIP_PG=1`` to
skip it deliberately on a machine without one (never in CI).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import Booking, Recovery, Staff, signals

PG_ADMIN_URL = os.environ.get("RECOVERY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("RECOVERY_TEST_SKIP_PG") == "1"

BACKENDS = ["sqlite", "postgresql"]


def pytest_configure(config):
    config.addinivalue_line("markers", "config(**kwargs): app.config overrides for the test")


# -- databases ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if SKIP_PG:
        if os.environ.get("CI"):  # CI runs every database test; a skip there would hide failures
            pytest.fail("RECOVERY_TEST_SKIP_PG=1 is refused under CI: PostgreSQL tests must run", pytrace=False)
        pytest.skip("RECOVERY_TEST_SKIP_PG=1: PostgreSQL tests skipped on purpose (never under CI)")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"recovery_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({error.orig}). Start it "
            "(see README, 'Running the tests') or set RECOVERY_TEST_SKIP_PG=1 on purpose.",
            pytrace=False,
        )
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """The database URL for one test: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recovery.sqlite'}"
    return request.getfixturevalue("pg_database")


# -- the host app ------------------------------------------------------------------


@dataclass
class Host:
    """A minimal booking site: bookings in a dict, a logged-in staff member."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    staff: Staff | None = None
    loads: int = 0

    STAFF = {
        "master": Staff(id="s-master", name="Olga", role="master", email="olga@salon.test"),
        "admin": Staff(id="s-admin", name="Irina", role="admin", email="irina@salon.test"),
        "manager": Staff(id="s-manager", name="Marina", role="manager", email="marina@salon.test"),
        "north_admin": Staff(id="s-north", name="Nina", role="admin", location="north"),
        "receptionist": Staff(id="s-recep", name="Rita", role="receptionist"),
    }

    def login(self, who: str | None) -> Staff | None:
        """Log a demo staff member in (``None`` logs out)."""
        self.staff = self.STAFF[who] if who else None
        return self.staff

    def add_booking(self, booking_id: str = "b1", **overrides: Any) -> Booking:
        """Add a booking that ended an hour ago (a completed visit) unless overridden."""
        now = datetime.now(UTC).replace(microsecond=0)
        values: dict[str, Any] = dict(
            id=booking_id,
            client_id="c1",
            client_name="Anna Smirnova",
            client_email="anna@client.test",
            starts_at=now - timedelta(hours=2),
            ends_at=now - timedelta(hours=1),
            staff_id="s-master",
            service="Haircut",
            price=150000,
            status="completed",
            location="center",
            locale="ru",
        )
        values.update(overrides)
        booking = Booking(**values)
        self.bookings[booking.id] = booking
        return booking

    def load(self, booking_id: str) -> Booking | None:
        self.loads += 1
        return self.bookings.get(booking_id)


def make_app(db_url: str, config: dict[str, Any] | None = None, host: Host | None = None):
    """Build a host app with flask-recovery wired in, as a host developer would."""
    app = Flask("host_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret",
        SQLALCHEMY_DATABASE_URI=db_url,
        WTF_CSRF_ENABLED=False,
        MAIL_SUPPRESS_SEND=False,
        MAIL_DEFAULT_SENDER="Velvet salon <hello@salon.test>",
    )
    app.config.update(config or {})
    db = SQLAlchemy()
    db.init_app(app)

    @app.teardown_appcontext
    def _host_commits(error: BaseException | None) -> None:
        # The host owns its transaction (flask_recovery.unit): this test host commits what
        # was done in an app context (the tests' own calls of the rules) when it ends
        # without an error, before Flask-SQLAlchemy's teardown removes the session.
        # Objects a test still holds keep what they had loaded (expunged, not expired).
        if error is None:
            db.session.flush()
            db.session.expunge_all()
            db.session.commit()

    recovery = Recovery()
    recovery.init_app(app, db=db)
    host = host or Host()
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: host.staff)
    app.host = host
    app.db = db
    app.recovery = recovery
    return app


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def app(request, db_url, host):
    """A host app on the test's database, with the extension's tables created."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("config"))):
        overrides.update(marker.kwargs)
    app = make_app(db_url, overrides, host)
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
    yield app
    with app.app_context():
        app.db.session.remove()
        app.recovery.drop_all()
        app.db.engine.dispose()


@pytest.fixture
def recovery(app) -> Recovery:
    return app.recovery


@pytest.fixture
def session(app):
    """The extension's session inside an app context."""
    with app.app_context():
        yield app.db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def booking(host) -> Booking:
    return host.add_booking()


# -- signals ---------------------------------------------------------------------------


@pytest.fixture
def signal_log():
    """Records every flask-recovery signal: a list of (signal name, kwargs)."""
    received: list[tuple[str, dict[str, Any]]] = []
    names = [
        "incident_recorded",
        "compensation_granted",
        "compensation_requested",
        "compensation_decided",
        "followup_sent",
        "feedback_received",
        "client_flagged",
    ]
    handlers = []
    for name in names:
        signal = getattr(signals, name)

        def handler(sender, _name=name, **kwargs):
            received.append((_name, kwargs))

        signal.connect(handler)
        handlers.append((signal, handler))
    yield received
    for signal, handler in handlers:
        signal.disconnect(handler)


# -- a real SMTP server ------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


@contextmanager
def running_smtp(handler):
    """A real aiosmtpd server on a free port of 127.0.0.1 with ``handler``; yields the port."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    """A real aiosmtpd server on 127.0.0.1; ``.messages`` holds what arrived (parsed)."""
    sink = _Sink()
    with running_smtp(sink) as sink.port:
        yield sink


@pytest.fixture
def outbox(smtp_server):
    """The messages the SMTP server received, as a list (filled as they arrive)."""
    return smtp_server.messages


__all__ = ["Host", "make_app", "replace", "running_smtp"]


# -- the browser (one Chromium for every browser test of the session) --------------------

CHROMIUM = os.environ.get("RECOVERY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's, through Playwright) for the whole session.

    Shared by every browser test module: Playwright's sync API allows one running instance
    per thread, so a second ``sync_playwright()`` while this one lives would fail.
    """
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Chromium not found at {CHROMIUM} (set RECOVERY_TEST_CHROMIUM, or deselect with -m 'not browser')",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def browser_pages(browser, base_url: str, timeout_ms: int = 5000):
    """``make(**context_options)`` -> a page in a fresh context on ``base_url``.

    Every context closes on exit; an HTTP error (but a missing favicon) or a script error
    seen by any page fails the test there.
    """
    contexts = []
    problems: list[str] = []

    def _on_response(response):
        if response.status >= 400 and urlsplit(response.url).path != "/favicon.ico":
            problems.append(f"HTTP {response.status} for {response.request.method} {response.url}")

    def make(**options):
        options.setdefault("locale", "en-US")
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(timeout_ms)
        context.on("response", _on_response)
        context.on("weberror", lambda error: problems.append(f"script error: {error.error}"))
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
    assert not problems, "the browser met errors:\n" + "\n".join(problems)
