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
from .config import permitted
from .domain import flags, holds
from .domain.incidents import client_record
from .errors import InvalidInput, NotFound, RecoveryError
from .extension import get_recovery
from .forms import AcknowledgeForm, ActionForm, CompensationForm, DecisionForm, FlagForm, IncidentForm, ReasonForm
from .i18n import gettext as _
from .models import utcnow
from .vocabulary import (
    category_label,
    compensation_status_label,
    kind_label,
    severity_label,
    status_label,
)
from .widgets import (
    answer_label,
    flag_label,
    flag_state_label,
    flag_title,
    followup_label,
    followup_status_label,
    format_money,
    local_time,
    visit_status_label,
    widget_context,
)


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


def _expired_form() -> RecoveryError:
    return RecoveryError(
        _("The form has expired or was not sent from this site. Go back, reload the page and try again.")
    )


def _context_booking(raw: Any):
    """The booking named in ``?booking=`` (or a form's ``booking_id``), or ``None``."""
    if not raw:
        return None
    try:
        return get_recovery().load_booking(raw)
    except NotFound:
        return None


def _client_page(client_id: str, staff, *, booking=None, errors=None, typed=None, status: int = 200):
    """Render the client's history page (also with a form's errors, status 4xx)."""
    recovery = get_recovery()
    record = client_record(recovery.session, client_id, staff, booking)
    client_name = None
    if booking is not None and booking.client_id == record.client_id:
        client_name = booking.client_name
    elif record.visits:
        try:
            client_name = recovery.load_booking(record.visits[0].booking_id).client_name
        except NotFound:
            client_name = None
    config = current_app.config
    html = render_template(
        "recovery/client.html",
        record=record,
        client_name=client_name,
        context_booking=booking if booking is not None and booking.client_id == record.client_id else None,
        staff=staff,
        errors=errors or {},
        typed=typed or {},
        now=utcnow(),
        ack_form=AcknowledgeForm(formdata=None),
        reason_form=ReasonForm(formdata=None),
        flag_form=FlagForm(formdata=None),
        can_acknowledge=permitted(config, "flag.acknowledge", staff.role),
        can_manage_flags=permitted(config, "flag.manage", staff.role),
        can_manage_hold=permitted(config, "hold.manage", staff.role),
        show_conduct=record.show_conduct,
        shown_reason=lambda flag: flags.shown_reason(flag, record.show_conduct),
        state_of=flags.state_of,
        flag_title=flag_title,
        flag_label=flag_label,
        flag_state_label=flag_state_label,
        local_time=local_time,
        format_money=format_money,
        kind_label=kind_label,
        category_label=category_label,
        severity_label=severity_label,
        status_label=status_label,
        compensation_status_label=compensation_status_label,
        visit_status_label=visit_status_label,
        followup_label=followup_label,
        followup_status_label=followup_status_label,
        answer_label=answer_label,
        here=request.full_path if request.query_string else request.path,
    )
    return html, status


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

    from .widgets import render_badges

    bp.add_app_template_global(render_badges, "recovery_badges")  # a whole day list's badges at once

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

    # -- the client's history, flags and booking holds ----------------------------------

    @bp.get("/clients/<client_id>")
    def client(client_id: str):
        """The client's history: visits, incidents, remedies, vouchers, answers and flags."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "client.view")
        return _client_page(client_id, staff, booking=_context_booking(request.args.get("booking")))

    def _done(message: str, next_url: Any, client_id: str, anchor: str, *, from_widget: bool = False):
        flash(message, "recovery")
        target = safe_next(next_url)
        if target is None:
            target = url_for("recovery.client", client_id=client_id)
        elif from_widget and urlsplit(target).path != url_for("recovery.client", client_id=client_id):
            anchor = "recovery-widget"  # back to the widget on a booking page
        return redirect(f"{target}#{anchor}", code=303)

    def _failed(client_id: str, staff, error: InvalidInput, form_key: str, typed: dict[str, Any]):
        booking = _context_booking(request.form.get("booking_id") or request.args.get("booking"))
        return _client_page(
            client_id, staff, booking=booking, errors={form_key: error.message}, typed={form_key: typed}, status=422
        )

    @bp.post("/flags/<flag_id>/acknowledge")
    def acknowledge_flag(flag_id: str):
        """Mark a flag as seen on a booking, with an optional note."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.acknowledge")
        flag = flags.get_flag(recovery.session, flag_id, staff)
        client_id, pk = flag.client_id, flag.id
        form = AcknowledgeForm()
        if not form.validate():
            raise _expired_form()
        booking = _context_booking(form.booking_id.data)
        try:
            flags.acknowledge_flag(recovery.session, pk, staff, note=form.note.data, booking=booking)
        except InvalidInput as error:
            return _failed(client_id, staff, error, f"ack-{pk}", {"note": form.note.data})
        return _done(_("Flag marked as seen."), form.next.data, client_id, f"flag-{pk}", from_widget=True)

    @bp.post("/flags/<flag_id>/lift")
    def lift_flag(flag_id: str):
        """A manager lifts a flag, with a reason."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.manage")
        flag = flags.get_flag(recovery.session, flag_id, staff)
        client_id, pk = flag.client_id, flag.id
        form = ReasonForm()
        if not form.validate():
            raise _expired_form()
        try:
            flags.lift_flag(recovery.session, pk, staff, reason=form.reason.data)
        except InvalidInput as error:
            return _failed(client_id, staff, error, f"lift-{pk}", {"reason": form.reason.data})
        return _done(_("Flag lifted."), form.next.data, client_id, f"flag-{pk}", from_widget=True)

    @bp.post("/clients/<client_id>/flags")
    def set_flag(client_id: str):
        """A manager flags the client by hand (extra attention or a conduct warning)."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.manage")
        form = FlagForm()
        if not form.validate():
            raise _expired_form()
        booking = _context_booking(form.booking_id.data)
        try:
            flag = flags.set_flag(
                recovery.session, client_id, staff, type=form.type.data, reason=form.reason.data, booking=booking
            )
        except InvalidInput as error:
            return _failed(client_id, staff, error, "set", {"reason": form.reason.data, "type": form.type.data})
        return _done(_("Flag set for her next visit."), form.next.data, client_id, f"flag-{flag.id}")

    def _hold_action(client_id: str, action, message: str, form_key: str):
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "hold.manage")
        form = ReasonForm()
        if not form.validate():
            raise _expired_form()
        try:
            action(recovery.session, client_id, staff, reason=form.reason.data)
        except InvalidInput as error:
            return _failed(client_id, staff, error, form_key, {"reason": form.reason.data})
        return _done(message, form.next.data, client_id, "recovery-hold")

    @bp.post("/clients/<client_id>/hold")
    def set_hold(client_id: str):
        """A manager pauses online booking for the client, with a reason."""
        return _hold_action(client_id, holds.set_hold, _("Online booking paused for this client."), "hold")

    @bp.post("/clients/<client_id>/hold/lift")
    def lift_hold(client_id: str):
        """A manager allows online booking again, with a reason."""
        return _hold_action(client_id, holds.lift_hold, _("Online booking allowed again."), "hold-lift")

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
