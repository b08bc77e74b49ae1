"""Staff pages: a thin HTTP layer over :mod:`flask_recovery.domain`.

The blueprint is built per app by :func:`create_blueprint` (never at import time), so
each app gets its own URL prefix. Pages work without JavaScript; every form is a POST
with a CSRF token; nothing changes on GET.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from . import domain
from .errors import InvalidInput, RecoveryError
from .extension import get_recovery
from .forms import ActionForm, CompensationForm, DecisionForm, IncidentForm
from .i18n import gettext as _
from .models import utcnow
from .vocabulary import kind_label
from .widgets import format_money, local_time, widget_context


def safe_next(target: Any) -> str | None:
    """``target`` if it is a local path on this site, else ``None`` (no open redirects)."""
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 2000:
        return None
    if target.startswith("//") or "\\" in target or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _csrf_failed(form) -> bool:
    token = getattr(form, "csrf_token", None)
    return bool(token is not None and token.errors)


def _back(booking_id: str, next_url: Any = None, anchor: str = "recovery-widget"):
    target = safe_next(next_url) or url_for("recovery.booking", booking_id=booking_id)
    return redirect(f"{target}#{anchor}", code=303)


def create_blueprint() -> Blueprint:
    """The ``recovery`` blueprint: staff pages and static files."""
    bp = Blueprint(
        "recovery",
        __name__,
        template_folder="templates",
        static_folder="static/recovery",
        static_url_path="/static",
    )

    from .journal import register_journal

    register_journal(bp)  # the KPI journal pages

    @bp.errorhandler(RecoveryError)
    def _page_error(error: RecoveryError):
        return render_template("recovery/error.html", error=error), error.status

    @bp.get("/bookings/<booking_id>")
    def booking(booking_id: str):
        """The booking page: record an incident, see the 3R script and the history."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        booking = recovery.load_booking(booking_id)
        context = widget_context(booking, staff, standalone=True)
        return render_template("recovery/booking.html", **context)

    @bp.post("/bookings/<booking_id>/incidents")
    def record_incident(booking_id: str):
        """Record an incident from the widget or the booking page."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "incident.record")
        booking = recovery.load_booking(booking_id)
        form = IncidentForm(current_app.config)
        if not form.validate():
            return _form_failed(booking, staff, form)
        try:
            domain.record_incident(
                recovery.session,
                booking,
                staff,
                category=form.category.data,
                severity=form.severity.data,
                description=form.description.data,
                corrective_action=form.corrective_action.data,
            )
        except InvalidInput as error:
            getattr(form, error.field, form.description).errors = [error.message]
            return _form_failed(booking, staff, form)
        flash(_("Incident recorded. Say the first words of the script now."), "recovery")
        return _back(booking.id, form.next.data)

    def _form_failed(booking, staff, form):
        status = 400 if _csrf_failed(form) else 422
        context = widget_context(booking, staff, standalone=True, form=form)
        return render_template("recovery/booking.html", **context), status

    def _incident_action(incident_id: str, action):
        recovery = get_recovery()
        staff = recovery.current_staff()
        incident = domain.get_incident(recovery.session, incident_id, staff)
        form = ActionForm()
        if not form.validate():
            raise RecoveryError(
                _("The form has expired or was not sent from this site. Go back, reload the page and try again.")
            )
        action(recovery.session, incident.id, staff, note=form.note.data)
        return _back(incident.booking_id, request.form.get("next"), anchor=f"incident-{incident.id}"), incident

    @bp.post("/incidents/<incident_id>/resolve")
    def resolve_incident(incident_id: str):
        """Mark a case resolved (the follow-up clock starts)."""
        response, done = _incident_action(incident_id, domain.resolve_incident)
        if done:
            flash(_("Case marked resolved."), "recovery")
        return response

    @bp.post("/incidents/<incident_id>/reopen")
    def reopen_incident(incident_id: str):
        """Reopen a resolved or closed case."""
        response, done = _incident_action(incident_id, domain.reopen_incident)
        if done:
            flash(_("Case reopened."), "recovery")
        return response

    @bp.post("/incidents/<incident_id>/compensations")
    def grant_compensation(incident_id: str):
        """Grant a remedy, or file a request for approval above one's authority."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "compensation.request")
        incident = domain.get_incident(recovery.session, incident_id, staff)
        booking = recovery.load_booking(incident.booking_id)
        incident_pk = incident.id
        form = CompensationForm()
        if not form.validate():
            return _comp_form_failed(booking, staff, form, incident_pk)
        try:
            compensation, created = domain.grant_compensation(
                recovery.session,
                incident_pk,
                recovery.load_booking,
                staff,
                kind=form.kind.data,
                amount=form.minor_units(current_app.config["RECOVERY_CURRENCY"]),
                percent=form.whole_percent(),
                note=form.note.data,
                idempotency_key=form.idempotency_key.data or None,
            )
        except InvalidInput as error:
            getattr(form, error.field, form.note).errors = [error.message]
            return _comp_form_failed(booking, staff, form, incident_pk)
        if compensation.status == "granted":
            flash(_("Compensation granted."), "recovery")
            if compensation.voucher_code:
                flash(_("Voucher code for the client: %(code)s", code=compensation.voucher_code), "recovery")
        else:
            flash(_("Above your authority: the request went to a manager."), "recovery")
        if domain.value_warnings(compensation, booking):
            flash(_("Note: this is worth more than %(share)s%% of the visit.", share=150), "recovery")
        return _back(booking.id, form.next.data, anchor=f"incident-{incident_pk}")

    def _comp_form_failed(booking, staff, form, incident_pk):
        status = 400 if _csrf_failed(form) else 422
        context = widget_context(booking, staff, standalone=True, comp_form=form, comp_form_incident=incident_pk)
        return render_template("recovery/booking.html", **context), status

    @bp.get("/approvals")
    def approvals():
        """The approvals queue: requests above someone's authority, oldest first."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        requests = domain.pending_requests(recovery.session, staff)
        return render_template(
            "recovery/approvals.html",
            requests=requests,
            staff=staff,
            form=DecisionForm(formdata=None),
            format_money=format_money,
            local_time=local_time,
            kind_label=kind_label,
        )

    def _decide(compensation_id: str, approve: bool):
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "compensation.approve")
        form = DecisionForm()
        if not form.validate():
            raise RecoveryError(
                _("The form has expired or was not sent from this site. Go back, reload the page and try again.")
            )
        domain.decide_compensation(recovery.session, compensation_id, staff, approve=approve, note=form.note.data)
        flash(_("Request approved.") if approve else _("Request rejected."), "recovery")
        target = safe_next(request.form.get("next")) or url_for("recovery.approvals")
        return redirect(target, code=303)

    @bp.post("/compensations/<compensation_id>/approve")
    def approve_compensation(compensation_id: str):
        """Approve a request from the queue."""
        return _decide(compensation_id, True)

    @bp.post("/compensations/<compensation_id>/reject")
    def reject_compensation(compensation_id: str):
        """Reject a request from the queue."""
        return _decide(compensation_id, False)

    @bp.get("/budget")
    def budget():
        """Compensation spend of a month per staff member and in total, against the plan."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "budget.view")
        month = domain.parse_month(request.args.get("month") or domain.month_of(utcnow()))
        report = domain.month_spend(recovery.session, staff, month)
        year, number = (int(part) for part in month.split("-"))
        previous = f"{year - (number == 1)}-{12 if number == 1 else number - 1:02d}"
        following = f"{year + (number == 12)}-{1 if number == 12 else number + 1:02d}"
        return render_template(
            "recovery/budget.html",
            report=report,
            previous=previous,
            following=following,
            format_money=format_money,
        )

    return bp
