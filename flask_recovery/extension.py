"""The :class:`Recovery` extension object: ``init_app``, host loaders and per-app state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from flask_babel import Babel, get_locale
from flask_mail import Mail
from markupsafe import Markup

from . import config as cfg
from . import i18n, proxies
from .entities import Booking, Staff, normalize_booking
from .errors import NotFound
from .i18n import gettext as _

BookingLoader = Callable[[str], Booking | None]
BookingsLoader = Callable[[list[str]], Iterable[Booking]]
StaffLoader = Callable[[], Staff | None]
BookingsBetween = Callable[[datetime, datetime], Iterable[Booking]]

#: The longest booking id the extension accepts from a URL or a host (longer is unknown).
MAX_BOOKING_ID = 64


@dataclass
class _State:
    """What one app's ``app.extensions["recovery"]`` holds."""

    recovery: Recovery
    db: Any
    mail: Mail
    url_prefix: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether "naive datetimes are read as local time" was logged for this app yet.
    naive_warned: bool = False


class Recovery:
    """Service recovery for a Flask booking site.

    ::

        recovery = Recovery()
        recovery.init_app(app, db=db)

        @recovery.booking_loader
        def load_booking(booking_id): ...

        @recovery.staff_loader
        def current_staff(): ...

    The object stores no app: per-app state lives on ``app.extensions["recovery"]``, so
    one ``Recovery`` may serve several apps, each with its own configuration.
    """

    def __init__(self, app: Flask | None = None, db: Any = None, mailer: Any = None) -> None:
        from .mail import Mailer

        #: The mail seam: an object with ``connection()`` and ``send(message)``.
        self.mailer = mailer or Mailer()
        self._booking_loader: BookingLoader | None = None
        self._bookings_loader: BookingsLoader | None = None
        self._staff_loader: StaffLoader | None = None
        self._bookings_between_func: BookingsBetween | None = None
        if app is not None:
            self.init_app(app, db=db)

    # -- host plug-in points -------------------------------------------------------

    def booking_loader(self, func: BookingLoader) -> BookingLoader:
        """Register ``func(booking_id: str) -> Booking | None``."""
        self._booking_loader = func
        return func

    def staff_loader(self, func: StaffLoader) -> StaffLoader:
        """Register ``func() -> Staff | None``: who is logged in at the desk."""
        self._staff_loader = func
        return func

    def bookings_loader(self, func: BookingsLoader) -> BookingsLoader:
        """Register ``func(ids: list[str]) -> Iterable[Booking]``: many bookings at once.

        Optional: :meth:`load_bookings` uses it (one call for a whole list) and falls back
        to the ``booking_loader`` per id without it. Unknown ids are simply left out.
        """
        self._bookings_loader = func
        return func

    def bookings_between(self, func: BookingsBetween) -> BookingsBetween:
        """Register ``func(start, end) -> Iterable[Booking]``: the bookings with
        ``start <= starts_at < end`` (aware UTC bounds), for follow-ups of every finished
        visit and return rates. Read it through :attr:`bookings_between_loader`."""
        self._bookings_between_func = func
        return func

    @property
    def bookings_between_loader(self) -> BookingsBetween | None:
        """The ``bookings_between`` loader with every booking checked and normalised
        (:meth:`normalize_booking`), or ``None`` when the host registered none.

        ``recovery.bookings_between_loader(start, end)`` yields ``Booking`` objects with
        aware times; pass it wherever a ``(start, end) -> Iterable[Booking]`` is wanted.
        """
        if self._bookings_between_func is None:
            return None
        return self._normalized_between

    @property
    def _bookings_between(self) -> BookingsBetween | None:
        """Deprecated (private) name of :attr:`bookings_between_loader`, kept for old callers."""
        return self.bookings_between_loader

    @_bookings_between.setter
    def _bookings_between(self, func: BookingsBetween | None) -> None:
        self._bookings_between_func = func

    def _normalized_between(self, start: datetime, end: datetime) -> Iterator[Booking]:
        loader = self._bookings_between_func
        if loader is None:
            raise RuntimeError("Register a loader with @recovery.bookings_between.")
        for booking in loader(start, end):
            if not isinstance(booking, Booking):
                raise TypeError(f"bookings_between must yield flask_recovery.Booking, not {type(booking)!r}")
            yield normalize_booking(booking)

    def load_bookings_between(self, start: datetime, end: datetime) -> list[Booking]:
        """The host's bookings with ``start <= starts_at < end``, normalised, as a list.

        Raises ``RuntimeError`` when no ``bookings_between`` loader is registered (check
        :attr:`bookings_between_loader` first where it is optional).
        """
        return list(self._normalized_between(start, end))

    # -- setup ---------------------------------------------------------------------

    def init_app(self, app: Flask, db: Any = None) -> None:
        """Configure ``app``: defaults, validation, blueprint, template helpers, CLI.

        ``db`` is the host's ``flask_sqlalchemy.SQLAlchemy``; when omitted, the one
        registered on ``app`` is used. Raises :class:`~flask_recovery.config.ConfigError`
        naming the bad key, and ``RuntimeError`` on a second ``init_app`` for one app.
        """
        if "recovery" in app.extensions:
            raise RuntimeError("flask-recovery is already initialised on this app; call init_app once.")
        if db is None:
            db = app.extensions.get("sqlalchemy")
        if db is None:
            raise RuntimeError(
                "flask-recovery needs Flask-SQLAlchemy: pass db= to Recovery()/init_app() "
                "or initialise SQLAlchemy on the app first."
            )
        cfg.apply_defaults(app.config)
        cfg.validate(app.config)
        _check_database(app, db)

        mail = app.extensions.get("mail")
        if mail is None:
            mail = Mail(app)
            mail = app.extensions.get("mail", mail)

        if "babel" not in app.extensions:
            Babel(
                app,
                locale_selector=i18n.select_locale,
                default_locale=app.config[cfg.key("DEFAULT_LOCALE")],
            )

        prefix = app.config[cfg.key("URL_PREFIX")]
        state = _State(recovery=self, db=db, mail=mail, url_prefix=prefix)
        app.extensions["recovery"] = state

        from .api import create_api_blueprint
        from .views import create_blueprint

        app.register_blueprint(create_blueprint(), url_prefix=prefix or None)
        api = create_api_blueprint()
        app.register_blueprint(api, url_prefix=f"{prefix}/api")
        csrf = app.extensions.get("csrf")
        if csrf is not None:  # a global CSRFProtect: JSON-only POSTs need no token
            csrf.exempt(api)

        from .answers import init_answers

        init_answers(app, prefix)  # the client's answer and unsubscribe pages

        from .widgets import render_badge, render_widget

        app.add_template_global(render_widget, "recovery_widget")
        app.add_template_global(render_badge, "recovery_badge")
        app.add_template_global(i18n.gettext, "_r")
        app.add_template_global(i18n.ngettext, "ngettext_r")
        app.add_template_global(_template_locale, "recovery_locale")

        from .ratelimit import init_rate_limits

        init_rate_limits(app)  # the public token routes (answers, unsubscribe)

        from .cli import recovery_cli

        app.cli.add_command(recovery_cli)

    # -- what the host calls -------------------------------------------------------

    def create_all(self) -> None:
        """Create the extension's tables on the host's engine (tests, quick starts).

        Real deployments run ``flask recovery init-db`` (Alembic) instead.
        """
        from .models import metadata

        metadata.create_all(_state().db.engine)

    def drop_all(self) -> None:
        """Drop the extension's tables (tests), and its migration version table with them.

        So that a later ``flask recovery init-db`` creates them again instead of finding
        the database "up to date" with no tables.
        """
        from sqlalchemy import text

        from .migrate import VERSION_TABLE
        from .models import metadata

        engine = _state().db.engine
        metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))

    def load_booking(self, booking_id: Any) -> Booking:
        """The host's booking with aware times (:meth:`normalize_booking`), or
        :class:`~flask_recovery.errors.NotFound`.

        Raises :class:`~flask_recovery.NaiveDatetimeError` for a naive time when
        ``RECOVERY_NAIVE_DATETIMES`` is ``"error"``.
        """
        if self._booking_loader is None:
            raise RuntimeError("Register a booking loader with @recovery.booking_loader.")
        booking_id = str(booking_id)
        if not booking_id or len(booking_id) > MAX_BOOKING_ID:
            raise NotFound(_("No such booking."))
        booking = self._booking_loader(booking_id)
        if booking is None:
            raise NotFound(_("No such booking."))
        if not isinstance(booking, Booking):
            raise TypeError(f"the booking loader must return a flask_recovery.Booking, not {type(booking)!r}")
        return normalize_booking(booking)

    def load_bookings(self, ids: Iterable[Any]) -> dict[str, Booking]:
        """Many of the host's bookings at once, normalised, by id (in the order asked).

        One call to the ``bookings_loader`` when the host registered one, otherwise the
        ``booking_loader`` once per id. Unknown ids (and ids the loader did not ask for)
        are absent from the result; an id asked twice is loaded once.
        """
        wanted: list[str] = []
        seen: set[str] = set()
        for raw in ids:
            booking_id = str(raw)
            if booking_id and len(booking_id) <= MAX_BOOKING_ID and booking_id not in seen:
                seen.add(booking_id)
                wanted.append(booking_id)
        if not wanted:
            return {}
        if self._bookings_loader is None:
            if self._booking_loader is None:
                raise RuntimeError("Register a booking loader with @recovery.booking_loader.")
            found: dict[str, Booking] = {}
            for booking_id in wanted:
                try:
                    found[booking_id] = self.load_booking(booking_id)
                except NotFound:
                    continue
            return found
        answer = self._bookings_loader(list(wanted))
        if answer is None:
            answer = ()
        elif isinstance(answer, Mapping):  # {id: Booking} is fine too
            answer = answer.values()
        loaded: dict[str, Booking] = {}
        for booking in answer:
            if booking is None:
                continue
            if not isinstance(booking, Booking):
                raise TypeError(f"the bookings loader must yield flask_recovery.Booking, not {type(booking)!r}")
            if booking.id in seen and booking.id not in loaded:
                loaded[booking.id] = normalize_booking(booking)
        return {booking_id: loaded[booking_id] for booking_id in wanted if booking_id in loaded}

    def normalize_booking(self, booking: Booking) -> Booking:
        """``booking`` with timezone-aware times per ``RECOVERY_NAIVE_DATETIMES`` (inside an
        app context): the same object when its times are aware already.

        ``"local"`` (default) reads a naive time in ``RECOVERY_TIMEZONE`` (logged once per
        app), ``"utc"`` as UTC, ``"error"`` raises :class:`~flask_recovery.NaiveDatetimeError`
        naming the field. Every loader's bookings go through it; call it on a ``Booking``
        built elsewhere before handing it to code that compares times.
        """
        return normalize_booking(booking)

    def current_staff(self) -> Staff | None:
        """Who is logged in at the desk, per the host's staff loader."""
        if self._staff_loader is None:
            raise RuntimeError("Register a staff loader with @recovery.staff_loader.")
        staff = self._staff_loader()
        if staff is not None and not isinstance(staff, Staff):
            raise TypeError(f"the staff loader must return a flask_recovery.Staff or None, not {type(staff)!r}")
        return staff

    def redeem_voucher(self, code: str, booking_id: Any):
        """Use a compensation voucher on a later booking, once.

        Returns the :class:`~flask_recovery.models.Compensation` (``kind``, ``amount``,
        ``percent``) for the host to apply. Raises ``NotFound`` for an unknown code and
        ``VoucherError`` (a ``Conflict``) for a used, expired or another client's voucher.
        """
        from .domain import redeem_voucher

        return redeem_voucher(self.session, code, self.load_booking(booking_id))

    # -- the next visit: flags, visits, holds ------------------------------------------

    def booking_created(self, booking_id: Any) -> list:
        """Tell the extension about a new booking; returns the client's active flags.

        Sends ``client_flagged`` for each active flag so a host can show it at once;
        flags also resolve on read, so calling this is optional.
        """
        from .domain import flags

        return flags.booking_created(self.session, self.load_booking(booking_id))

    def visit_completed(self, booking_id: Any) -> list:
        """Call at checkout: the visit took place; the client's active flags are used up.

        Returns the flags used up by this visit.
        """
        from .domain import flags

        return flags.visit_completed(self.session, self.load_booking(booking_id))

    def flags_for_bookings(self, bookings: Iterable[Any]) -> dict[str, list]:
        """Active flags for many bookings at once (ids or ``Booking`` objects), by booking id.

        A day list of 200 bookings costs a bounded number of queries.
        """
        from .domain import flags

        items = [normalize_booking(item) if isinstance(item, Booking) else item for item in bookings]
        return flags.flags_for_bookings(self.session, items)

    def client_flags(self, client_id: Any) -> list:
        """The client's active (not used up, not expired, not lifted) flags."""
        from .domain import flags

        return flags.active_flags(self.session, str(client_id))

    def may_book(self, client_id: Any):
        """Whether the client may book online, with the manager's reason if not.

        Returns an object with ``allowed`` (bool) and ``reason`` (str or None); truthy
        when allowed. Off (always allowed) unless a manager set a hold.
        """
        from .domain import holds

        return holds.may_book(self.session, str(client_id))

    def badge(self, booking: Any) -> Markup:
        """The flag badge's HTML for a booking id or ``Booking`` (same as ``recovery_badge``)."""
        from .widgets import render_badge

        return render_badge(normalize_booking(booking) if isinstance(booking, Booking) else booking)

    def badges(self, bookings: Iterable[Any]):
        """The badges of a whole list at once, by booking id (same as ``recovery_badges``)."""
        from .widgets import render_badges

        return render_badges([normalize_booking(b) if isinstance(b, Booking) else b for b in bookings])

    def sync_visits(self, start: datetime, end: datetime) -> int:
        """Copy the bookings of ``[start, end)`` from the ``bookings_between`` loader into
        the extension's visit table (ids and times only), for return rates.

        Returns how many bookings were seen. ``flask recovery stats --sync-visits`` does the
        same for the period it reports.
        """
        from .domain import stats

        loader = self.bookings_between_loader
        if loader is None:
            raise RuntimeError("Register a loader with @recovery.bookings_between to sync visits.")
        return stats.sync_visits(self.session, loader, start, end)

    # -- privacy ---------------------------------------------------------------------

    def forget_client(self, client_id: Any):
        """Erase a client's personal data from the extension's tables; keep anonymous figures.

        Cancels her outstanding mail, voids links already sent, flags and vouchers.
        Returns a summary of what was erased. Running it twice is harmless.
        """
        from .domain import privacy

        return privacy.forget_client(self.session, str(client_id))

    def export_client(self, client_id: Any) -> dict[str, Any]:
        """Everything the extension holds about a client, as JSON-ready data (right of access)."""
        from .domain import privacy

        return privacy.export_client(self.session, str(client_id))

    @property
    def session(self):
        """The SQLAlchemy session the extension uses (the host's ``db.session``)."""
        return _state().db.session

    def widget(self, booking_id: Any) -> Markup:
        """The checkout widget's HTML for ``booking_id`` (same as ``recovery_widget``)."""
        from .widgets import render_widget

        return render_widget(booking_id)


def _check_database(app: Flask, db: Any) -> None:
    """Refuse a database the extension does not run on, at start-up rather than at the first
    write. Engines are built without connecting; a ``db`` not yet set up on ``app`` is
    checked at its first use instead (``check_database`` in the rules that need it)."""
    from .models import check_database

    with app.app_context():
        try:
            engine = db.engine
        except Exception:  # db.init_app(app) comes later: nothing to look at yet
            return
        check_database(engine.dialect.name)


def _state() -> _State:
    found: _State = proxies.state()
    return found


#: The current app's :class:`Recovery` (its home is :mod:`flask_recovery.proxies`; kept here
#: for code that imported it from this module).
get_recovery = proxies.get_recovery


def _template_locale() -> str:
    """The page language for ``<html lang>``, e.g. ``ru``."""
    locale = get_locale()
    return locale.language if locale else current_app.config[cfg.key("DEFAULT_LOCALE")]
