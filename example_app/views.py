"""The salon's pages: day list, checkout, clients, and the language and role switchers."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from .forms import BookOnlineForm, CompleteVisitForm, LanguageForm, StaffForm, csrf_failed
from .helpers import LANG_SESSION_KEY, safe_next, salon_today, salon_tz
from .integration import get_booking_row, recovery, to_booking
from .labels import LANGUAGE_NAMES, LOCATIONS, SPECIALITIES, STATUS_LABELS
from .models import Client, Master, SalonBooking, Service, db
from .seed import MASTER_LOCATION
from .staff import SESSION_KEY as STAFF_SESSION_KEY
from .staff import current_staff

bp = Blueprint("salon", __name__)


@bp.context_processor
def _labels() -> dict:
    return {
        "status_labels": STATUS_LABELS,
        "specialities": SPECIALITIES,
        "locations": LOCATIONS,
        "language_names": LANGUAGE_NAMES,
        "ui_locale": str(get_locale() or "ru"),
    }


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_day(raw: str | None) -> date:
    """``?date=YYYY-MM-DD`` (today when absent); a friendly 400 for anything else."""
    if raw is None or raw == "":
        return salon_today()
    try:
        if not _DATE_RE.match(raw):
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        abort(400, _("The date must look like 2025-03-14."))
    if not 1971 <= day.year <= 9998:
        abort(400, _("That date is out of range."))
    return day


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    tz = salon_tz()
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(timezone.utc)
    return start, end


def _back_to(form_next: str | None):
    return redirect(safe_next(form_next) or url_for("salon.index"), code=303)


@bp.get("/")
def index():
    return redirect(url_for("salon.day"))


@bp.get("/day")
def day():
    the_day = _parse_day(request.args.get("date"))
    start, end = _day_bounds(the_day)
    rows = (
        db.session.scalars(
            db.select(SalonBooking)
            .where(SalonBooking.starts_at >= start, SalonBooking.starts_at < end)
            .order_by(SalonBooking.starts_at, SalonBooking.id)
        )
        .unique()
        .all()
    )
    pairs = [(row, to_booking(row)) for row in rows]
    return render_template(
        "salon/day.html",
        day=the_day,
        today=salon_today(),
        prev_day=the_day - timedelta(days=1),
        next_day=the_day + timedelta(days=1),
        rows=pairs,
    )


def _booking_or_404(booking_id: str) -> SalonBooking:
    row = get_booking_row(booking_id)
    if row is None:
        abort(404, _("There is no booking with that number."))
    return row


@bp.get("/bookings/<booking_id>/checkout")
def checkout(booking_id: str):
    row = _booking_or_404(booking_id)
    return render_template(
        "salon/checkout.html",
        booking=row,
        day=row.starts_at.astimezone(salon_tz()).date(),
        form=CompleteVisitForm(),
        staff=current_staff(),
    )


@bp.post("/bookings/<booking_id>/complete")
def complete(booking_id: str):
    row = _booking_or_404(booking_id)
    form = CompleteVisitForm()
    if not form.validate_on_submit():
        abort(400, _("The form has expired. Go back, reload the page and try again."))
    here = url_for("salon.checkout", booking_id=row.id)
    if row.status == "completed":
        flash(_("This visit is already marked completed."), "info")
        return redirect(here, code=303)
    if row.status != "booked":
        flash(_("A cancelled booking or a no-show cannot be marked completed."), "error")
        return redirect(here, code=303)
    row.status = "completed"
    used = recovery.visit_completed(str(row.id))  # the flags for this visit are now used up
    db.session.commit()  # one commit: the visit and its used-up flags together (the host owns it)
    flash(_("Visit marked completed. Thank you!"), "success")
    if used:
        flash(_("The note for this visit is done: it will not show on her next booking."), "info")
    return redirect(here, code=303)


@bp.get("/clients")
def clients():
    rows = db.session.scalars(db.select(Client).order_by(Client.name, Client.id)).all()
    latest = dict(
        db.session.execute(
            db.select(SalonBooking.client_id, db.func.max(SalonBooking.id)).group_by(SalonBooking.client_id)
        ).all()
    )
    return render_template(
        "salon/clients.html",
        clients=rows,
        latest_booking=latest,
        online={client.id: recovery.may_book(client.id) for client in rows},
        staff=current_staff(),
    )


def _book_form() -> BookOnlineForm:
    locale = str(get_locale() or "ru")
    form = BookOnlineForm()
    return form.fill_choices(
        db.session.scalars(db.select(Client).order_by(Client.name, Client.id)),
        db.session.scalars(db.select(Service).order_by(Service.id)),
        db.session.scalars(db.select(Master).order_by(Master.id)),
        locale,
    )


@bp.get("/book")
def book():
    """The salon's online booking page, as a client sees it."""
    form = _book_form()
    if not form.day.data:
        form.day.data = salon_today() + timedelta(days=1)
    return render_template("salon/book.html", form=form, refused=None)


@bp.post("/book")
def book_post():
    form = _book_form()
    if not form.validate_on_submit():
        if csrf_failed(form):
            abort(400, _("The form has expired. Go back, reload the page and try again."))
        return render_template("salon/book.html", form=form, refused=None), 422
    client = db.session.get(Client, form.client.data)
    service = db.session.get(Service, form.service.data)
    master = db.session.get(Master, form.master.data)
    if client is None or service is None or master is None:
        abort(400, _("Choose a client, a service and a master from the lists."))
    answer = recovery.may_book(client.id)
    if not answer:
        # A manager asked to take her bookings by phone: no reason is shown to her.
        return render_template("salon/book.html", form=form, refused=client), 409
    starts_at = datetime.combine(form.day.data, form.time.data, tzinfo=salon_tz()).astimezone(timezone.utc)
    if starts_at <= datetime.now(timezone.utc):
        form.time.errors = [_("Choose a time in the future.")]
        return render_template("salon/book.html", form=form, refused=None), 422
    row = SalonBooking(
        client_id=client.id,
        master_id=master.id,
        service_id=service.id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=service.duration),
        price=service.price,
        status="booked",
        location=MASTER_LOCATION.get(master.id, "center"),
    )
    db.session.add(row)
    db.session.flush()  # the booking's id, for the extension
    recovery.booking_created(str(row.id))  # the desk hears of her flags at once (signal)
    db.session.commit()  # the booking and the extension's visit row in one transaction
    service_name = service.name(str(get_locale() or "ru"))
    flash(_("Booked: %(service)s at %(time)s.", service=service_name, time=form.time.data.strftime("%H:%M")), "success")
    return redirect(url_for("salon.day", date=form.day.data.isoformat()), code=303)


@bp.post("/lang")
def set_language():
    form = LanguageForm()
    if not form.validate_on_submit():
        if csrf_failed(form):
            abort(400, _("The form has expired. Go back, reload the page and try again."))
        abort(400, _("Unknown language."))
    session[LANG_SESSION_KEY] = form.lang.data
    return _back_to(form.next.data)


@bp.post("/staff")
def set_staff():
    form = StaffForm()
    if not form.validate_on_submit():
        if csrf_failed(form):
            abort(400, _("The form has expired. Go back, reload the page and try again."))
        abort(400, _("Unknown staff member."))
    if form.staff.data:
        session[STAFF_SESSION_KEY] = form.staff.data
    else:
        session.pop(STAFF_SESSION_KEY, None)
    return _back_to(form.next.data)
