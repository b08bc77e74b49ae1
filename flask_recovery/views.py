"""Staff pages: a thin HTTP layer over :mod:`flask_recovery.domain`.

The blueprint is built per app by :func:`create_blueprint` (never at import time), so
each app gets its own URL prefix. Pages work without JavaScript; every form is a POST
with a CSRF token; nothing changes on GET.

Every form of the widget (and of the client and approvals pages) carries ``next``, the
page it was drawn on, and comes back there with a 303 on success and on a mistake
(Post/Redirect/Get): what the staff member should read there, the mistakes by field and
what she typed are kept in the session for that booking or client
(:func:`~flask_recovery.forms.keep_state`) and shown once, in the widget, next to the
form (never through the host's ``flash()``). A POST without a safe ``next`` (a script, a
test) gets the extension's own page drawn with the mistakes and a 422 instead, as does a
mistake whose text would not fit in the session cookie.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.routing import BuildError

from . import domain
from .config import key, permitted
from .domain import flags, holds
from .domain.compensations import approval_cards
from .domain.incidents import client_record
from .errors import Conflict, InvalidInput, NotAuthenticated, NotFound, RecoveryError
from .forms import (
    AcknowledgeForm,
    ActionForm,
    CompensationForm,
    DecisionForm,
    FlagForm,
    FormState,
    IncidentForm,
    ReasonForm,
    booking_scope,
    client_scope,
    field_message,
    keep_state,
    scope_slug,
    take_state,
)
from .i18n import gettext as _
from .i18n import init_staff_locale
from .models import utcnow
from .proxies import get_recovery
from .unit import commit_after_request
from .vocabulary import (
    category_label,
    compensation_status_label,
    kind_label,
    severity_label,
    status_label,
)
from .widgets import (
    WIDGET_ANCHOR,
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

#: The state scope of the approvals queue's messages.
APPROVALS_SCOPE = "approvals"


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


def _same_origin() -> bool:
    """Whether the POST came from a page of this site (``Origin``, else ``Referer``).

    A form whose CSRF token expired is sent back with what was typed only then: a forged
    cross-site POST must not be able to put its text into a staff member's form.
    """
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.host
    referrer = request.referrer
    return bool(referrer) and urlsplit(referrer).netloc == request.host


def _expired_form() -> RecoveryError:
    return RecoveryError(
        _("The form has expired or was not sent from this site. Go back, reload the page and try again.")
    )


def _expired_kept() -> str:
    return _("The form had expired, so nothing was saved. What you typed is still here: check it and send it again.")


def _target(next_url: Any) -> str | None:
    """The safe ``next`` without its fragment (the redirect adds its own anchor)."""
    target = safe_next(next_url)
    return target.split("#", 1)[0] if target else None


def _go(target: str, anchor: str):
    return redirect(f"{target}#{anchor}", code=303)


def _back_with(scope: str, state: FormState, next_url: Any, anchor: str):
    """303 back to ``next#anchor`` with ``state`` kept for the page; ``None`` when there is
    no safe ``next`` or the state cannot be carried (the caller draws the page itself)."""
    target = _target(next_url)
    if target is None or not keep_state(scope, state):
        return None
    return _go(target, anchor)


def _done(scope: str, state: FormState, next_url: Any, anchor: str, fallback: str):
    """After success: back to ``next`` (or ``fallback``) with the messages kept."""
    keep_state(scope, state)  # without a session the message is lost; the work is done
    return _go(_target(next_url) or fallback, anchor)


# -- the host's login --------------------------------------------------------------------


def login_url() -> str | None:
    """The host's login page: ``RECOVERY_LOGIN_VIEW`` (an endpoint name or a URL), else
    Flask-Login's ``login_view`` (per blueprint, then the app's) when a ``LoginManager``
    is on the app; ``None`` when there is none (or the endpoint does not exist: logged)."""
    view = current_app.config.get(key("LOGIN_VIEW"))
    if not view:
        manager = getattr(current_app, "login_manager", None)
        if manager is not None:
            per_blueprint = getattr(manager, "blueprint_login_views", None) or {}
            view = per_blueprint.get(request.blueprint) or getattr(manager, "login_view", None)
    if not view or not isinstance(view, str):
        return None
    if view.startswith(("/", "http://", "https://")):
        return view
    try:
        return url_for(view)
    except BuildError:
        current_app.logger.error("RECOVERY_LOGIN_VIEW / login_view %r is not an endpoint of this app", view)
        return None


def _with_next(url: str, next_path: str | None) -> str:
    """``url`` with ``next=next_path`` in its query (an earlier ``next`` replaced)."""
    if not next_path:
        return url
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name != "next"]
    query.append(("next", next_path))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _login_redirect():
    """The redirect to the host's login with ``next`` = where the staff member was going
    (this page for a GET; for a POST the page its form came from), or ``None``."""
    target = login_url()
    if target is None:
        return None
    if request.method in ("GET", "HEAD"):
        path = request.full_path if request.query_string else request.path
        back = safe_next(request.script_root + path)
        return redirect(_with_next(target, back), code=302)
    return redirect(_with_next(target, _target(request.form.get("next"))), code=303)


# -- pages ---------------------------------------------------------------------------------


def _context_booking(raw: Any):
    """The booking named in ``?booking=`` (or a form's ``booking_id``), or ``None``."""
    if not raw:
        return None
    try:
        return get_recovery().load_booking(raw)
    except NotFound:
        return None


def _client_page(client_id: str, staff, *, booking=None, state: FormState | None = None, status: int = 200):
    """Render the client's history page, with what the last form left (``state``; by
    default the one kept in the session) and the status (4xx for a mistake drawn here)."""
    recovery = get_recovery()
    record = client_record(recovery.session, client_id, staff, booking)
    if state is None:
        state = take_state(client_scope(record.client_id)) or FormState()
    client_name = None
    if booking is not None and booking.client_id == record.client_id:
        client_name = booking.client_name
    elif record.visits:
        try:
            client_name = recovery.load_booking(record.visits[0].booking_id).client_name
        except NotFound:
            client_name = None
    config = current_app.config
    anchors = {"recovery-client", "recovery-hold", "recovery-set-flag"}
    anchors.update(f"flag-{flag.id}" for flag in [*record.active_flags, *record.past_flags])
    errors = {}
    if state.form and state.errors:
        errors[state.form] = " ".join(message for messages in state.errors.values() for message in messages)
    html = render_template(
        "recovery/client.html",
        record=record,
        client_name=client_name,
        context_booking=booking if booking is not None and booking.client_id == record.client_id else None,
        staff=staff,
        errors=errors,
        typed={state.form: state.typed} if state.form else {},
        messages=state.messages_at(anchors, "recovery-client"),
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
        here=request.script_root + (request.full_path if request.query_string else request.path),
    )
    return html, status


def _page_error(error: RecoveryError):
    """A refusal as a page in the staff member's language; no staff member logged in: the
    host's login when it has one (``RECOVERY_LOGIN_VIEW`` or Flask-Login's)."""
    if isinstance(error, NotAuthenticated):
        response = _login_redirect()
        if response is not None:
            return response
    return render_template("recovery/error.html", error=error), error.status


def _booking_page(booking, staff, state: FormState, status: int):
    """The extension's booking page drawn in answer to a POST, with ``state``."""
    context = widget_context(booking, staff, standalone=True, state=state)
    return render_template("recovery/booking.html", **context), status


def _refused(booking, staff, state: FormState, next_url: Any, anchor: str, *, status: int, csrf: bool = False):
    """A widget form refused: back to its page with ``state``, or the booking page."""
    if csrf and not _same_origin():
        # a token that is not this site's: show nothing the POST sent, and do not redirect
        return _booking_page(booking, staff, FormState().say(_expired_form().message, "error", anchor), status)
    response = _back_with(booking_scope(booking.id), state, next_url, anchor)
    if response is not None:
        return response
    return _booking_page(booking, staff, state, status)


def _field_of(form, error: InvalidInput, default: str) -> str:
    return error.field if error.field and error.field in form else default


def booking(booking_id: str):
    """The booking page: record an incident, see the 3R script and the history."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    found = recovery.load_booking(booking_id)
    context = widget_context(found, staff, standalone=True)
    return render_template("recovery/booking.html", **context)


def record_incident(booking_id: str):
    """Record an incident from the widget or the booking page."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, "incident.record")
    found = recovery.load_booking(booking_id)
    if not staff.can_see(found):
        raise NotFound(_("No such booking."))
    config = current_app.config
    form = IncidentForm(config)
    anchor = f"recovery-record-{scope_slug(found.id)}"
    state = FormState(form="incident", typed=form.typed())
    if not form.validate():  # only the CSRF token: the rules check the fields
        return _refused(
            found, staff, state.say(_expired_kept(), "error", anchor), form.next.data, anchor, status=400, csrf=True
        )
    errors = form.problems(config)
    if not errors:
        try:
            domain.record_incident(
                recovery.session,
                found,
                staff,
                category=form.category.data,
                severity=form.severity.data,
                description=form.description.data,
                corrective_action=form.corrective_action.data,
            )
        except InvalidInput as error:
            errors = {_field_of(form, error, "description"): [field_message(error)]}
        else:
            done = FormState().say(_("Incident recorded. Say the first words of the script now."), at=WIDGET_ANCHOR)
            page = url_for("recovery.booking", booking_id=found.id)
            return _done(booking_scope(found.id), done, form.next.data, WIDGET_ANCHOR, page)
    state.errors = errors
    state.say(_("The incident is not recorded yet: correct the marked fields."), "error", anchor)
    return _refused(found, staff, state, form.next.data, anchor, status=422)


def _incident_action(incident_id: str, action, name: str, message: str):
    """Resolve or reopen (``action``) from the widget; back to its page either way."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    incident = domain.get_incident(recovery.session, incident_id, staff)
    booking_id, pk = incident.booking_id, incident.id
    scope, anchor, next_url = booking_scope(booking_id), f"incident-{pk}", request.form.get("next")
    form = ActionForm()
    state = FormState(form=f"{name}-{pk}", typed={"note": form.note.data})
    if not form.validate():
        if _same_origin():
            response = _back_with(scope, state.say(_expired_kept(), "error", anchor), next_url, anchor)
            if response is not None:
                return response
        raise _expired_form()
    try:
        action(recovery.session, pk, staff, note=form.note.data)
    except (InvalidInput, Conflict) as error:
        if isinstance(error, InvalidInput):
            state.errors = {"note": [field_message(error, "note")]}
            state.say(_("Nothing was changed: correct the marked field."), "error", anchor)
        else:  # another desk changed the case first
            state.say(field_message(error), "error", anchor)
        response = _back_with(scope, state, next_url, anchor)
        if response is not None:
            return response
        raise
    page = url_for("recovery.booking", booking_id=booking_id)
    return _done(scope, FormState().say(message, at=anchor), next_url, anchor, page)


def resolve_incident(incident_id: str):
    """Mark a case resolved (the follow-up clock starts)."""
    return _incident_action(incident_id, domain.resolve_incident, "resolve", _("Case marked resolved."))


def reopen_incident(incident_id: str):
    """Reopen a resolved or closed case."""
    return _incident_action(incident_id, domain.reopen_incident, "reopen", _("Case reopened."))


def grant_compensation(incident_id: str):
    """Grant a remedy, or file a request for approval above one's authority."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, "compensation.request")
    incident = domain.get_incident(recovery.session, incident_id, staff)
    found = recovery.load_booking(incident.booking_id)
    pk = incident.id
    scope, form_anchor, done_anchor = booking_scope(found.id), f"recovery-grant-{pk}", f"incident-{pk}"
    form = CompensationForm()
    state = FormState(form=f"grant-{pk}", typed=form.typed())
    if not form.validate():
        state.say(_expired_kept(), "error", form_anchor)
        return _refused(found, staff, state, form.next.data, form_anchor, status=400, csrf=True)
    currency = current_app.config[key("CURRENCY")]
    errors = form.problems(found, currency)
    if not errors:
        try:
            compensation, _created = domain.grant_compensation(
                recovery.session,
                pk,
                recovery.load_booking,
                staff,
                kind=form.kind.data,
                amount=form.minor_units(currency),
                percent=form.whole_percent(),
                note=form.note.data,
                idempotency_key=form.idempotency_key.data or None,
            )
        except InvalidInput as error:
            errors = {_field_of(form, error, "note"): [field_message(error)]}
        except Conflict as error:  # a closed case, a conduct case, a second redo...
            response = _back_with(
                scope, state.say(field_message(error), "error", form_anchor), form.next.data, form_anchor
            )
            if response is not None:
                return response
            raise
        else:
            done = FormState()
            if compensation.status == "granted":
                done.say(_("Compensation granted."), at=done_anchor)
                if compensation.voucher_code:
                    done.say(_("Voucher code for the client: %(code)s", code=compensation.voucher_code), at=done_anchor)
            else:
                done.say(_("Above your authority: the request went to a manager."), at=done_anchor)
            if domain.value_warnings(compensation, found):
                done.say(
                    _("Note: this is worth more than %(share)s%% of the visit.", share=150), "warning", done_anchor
                )
            page = url_for("recovery.booking", booking_id=found.id)
            return _done(scope, done, form.next.data, done_anchor, page)
    state.errors = errors
    state.say(_("Nothing is granted yet: correct the marked fields."), "error", form_anchor)
    return _refused(found, staff, state, form.next.data, form_anchor, status=422)


# -- the client's history, flags and booking holds ----------------------------------


def client(client_id: str):
    """The client's history: visits, incidents, remedies, vouchers, answers and flags."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, "client.view")
    return _client_page(client_id, staff, booking=_context_booking(request.args.get("booking")))


def _flag_scope(client_id: str, booking, next_url: Any) -> tuple[str, bool]:
    """Where a flag form's outcome is shown: the booking's widget when the form came from
    one (it names the booking and ``next`` is not the client page), else the client page."""
    target = _target(next_url)
    if booking is not None and target is not None:
        if urlsplit(target).path != url_for("recovery.client", client_id=client_id):
            return booking_scope(booking.id), True
    return client_scope(client_id), False


def _flag_refused(client_id: str, staff, booking, scope: str, state: FormState, next_url: Any, anchor: str):
    """A flag or hold form refused: back to its page with ``state``, or the client page (422)."""
    response = _back_with(scope, state, next_url, anchor)
    if response is not None:
        return response
    return _client_page(client_id, staff, booking=booking, state=state, status=422)


def _flag_expired(scope: str, state: FormState, next_url: Any, anchor: str):
    """A flag or hold form whose CSRF token failed: back with what was typed when the POST
    came from this site and has a ``next``; the error page (400) otherwise."""
    if _same_origin():
        response = _back_with(scope, state.say(_expired_kept(), "error", anchor), next_url, anchor)
        if response is not None:
            return response
    raise _expired_form()


def _flag_conflict(error: Conflict, scope: str, state: FormState, next_url: Any, anchor: str):
    """The flag or hold changed meanwhile: back with the reason, or the error page (409)."""
    response = _back_with(scope, state.say(field_message(error), "error", anchor), next_url, anchor)
    if response is not None:
        return response
    raise error


def _flag_action(flag_id: str, *, permission: str, form, field: str, key: str, act, not_yet: str, done_message: str):
    """What acknowledging and lifting a flag share: scope, the form state, the rule, the way back.

    ``act(session, flag_pk, staff, text, booking)`` runs the rule with the form's ``field``.
    """
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, permission)
    flag = flags.get_flag(recovery.session, flag_id, staff)
    client_id, pk = flag.client_id, flag.id
    text = getattr(form, field).data
    found = _context_booking(request.form.get("booking_id"))
    scope, on_widget = _flag_scope(client_id, found, form.next.data)
    anchor = f"flag-{pk}"
    state = FormState(form=f"{key}-{pk}", typed={field: text})
    if not form.validate():
        return _flag_expired(scope, state, form.next.data, anchor)
    try:
        act(recovery.session, pk, staff, text, found)
    except InvalidInput as error:
        state.errors = {field: [field_message(error, field)]}
        state.say(not_yet, "error", anchor)
        return _flag_refused(client_id, staff, found, scope, state, form.next.data, anchor)
    except Conflict as error:
        return _flag_conflict(error, scope, state, form.next.data, anchor)
    done_anchor = WIDGET_ANCHOR if on_widget else anchor
    done = FormState().say(done_message, at=done_anchor)
    return _done(scope, done, form.next.data, done_anchor, url_for("recovery.client", client_id=client_id))


def acknowledge_flag(flag_id: str):
    """Mark a flag as seen on a booking, with an optional note."""
    return _flag_action(
        flag_id,
        permission="flag.acknowledge",
        form=AcknowledgeForm(),
        field="note",
        key="ack",
        act=lambda session, pk, staff, note, found: flags.acknowledge_flag(
            session, pk, staff, note=note, booking=found
        ),
        not_yet=_("Not saved yet: correct the marked field."),
        done_message=_("Flag marked as seen."),
    )


def lift_flag(flag_id: str):
    """A manager lifts a flag, with a reason."""
    return _flag_action(
        flag_id,
        permission="flag.manage",
        form=ReasonForm(),
        field="reason",
        key="lift",
        act=lambda session, pk, staff, reason, found: flags.lift_flag(session, pk, staff, reason=reason),
        not_yet=_("The flag is not lifted yet: correct the marked field."),
        done_message=_("Flag lifted."),
    )


def set_flag(client_id: str):
    """A manager flags the client by hand (extra attention or a conduct warning)."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, "flag.manage")
    form = FlagForm()
    found = _context_booking(form.booking_id.data)
    scope, on_widget = _flag_scope(client_id, found, form.next.data)
    anchor = "recovery-set-flag"
    state = FormState(form="set", typed={"reason": form.reason.data, "type": form.type.data})
    if not form.validate():
        return _flag_expired(scope, state, form.next.data, anchor)
    try:
        flag = flags.set_flag(
            recovery.session, client_id, staff, type=form.type.data, reason=form.reason.data, booking=found
        )
    except InvalidInput as error:
        state.errors = {_field_of(form, error, "reason"): [field_message(error)]}
        state.say(_("The flag is not set yet: correct the marked field."), "error", anchor)
        return _flag_refused(client_id, staff, found, scope, state, form.next.data, anchor)
    done_anchor = WIDGET_ANCHOR if on_widget else f"flag-{flag.id}"
    done = FormState().say(_("Flag set for the client's next visit."), at=done_anchor)
    return _done(scope, done, form.next.data, done_anchor, url_for("recovery.client", client_id=client_id))


def _hold_action(client_id: str, action, message: str, form_key: str):
    recovery = get_recovery()
    staff = recovery.current_staff()
    domain.require_permission(staff, "hold.manage")
    form = ReasonForm()
    scope, anchor = client_scope(client_id), "recovery-hold"
    state = FormState(form=form_key, typed={"reason": form.reason.data})
    if not form.validate():
        return _flag_expired(scope, state, form.next.data, anchor)
    try:
        action(recovery.session, client_id, staff, reason=form.reason.data)
    except InvalidInput as error:
        state.errors = {"reason": [field_message(error, "reason")]}
        state.say(_("Nothing was changed: correct the marked field."), "error", anchor)
        booking = _context_booking(request.args.get("booking"))
        return _flag_refused(client_id, staff, booking, scope, state, form.next.data, anchor)
    except Conflict as error:
        return _flag_conflict(error, scope, state, form.next.data, anchor)
    done = FormState().say(message, at=anchor)
    return _done(scope, done, form.next.data, anchor, url_for("recovery.client", client_id=client_id))


def set_hold(client_id: str):
    """A manager pauses online booking for the client, with a reason."""
    return _hold_action(client_id, holds.set_hold, _("Online booking paused for this client."), "hold")


def lift_hold(client_id: str):
    """A manager allows online booking again, with a reason."""
    return _hold_action(client_id, holds.lift_hold, _("Online booking allowed again."), "hold-lift")


# -- approvals and the month's spend ------------------------------------------------------


def approvals():
    """The approvals queue: requests above someone's authority, oldest first."""
    recovery = get_recovery()
    staff = recovery.current_staff()
    requests = domain.pending_requests(recovery.session, staff)
    state = take_state(APPROVALS_SCOPE) or FormState()
    return render_template(
        "recovery/approvals.html",
        requests=requests,
        cards=approval_cards(recovery.session, requests, recovery.load_bookings),
        staff=staff,
        messages=state.messages,
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
        raise _expired_form()
    domain.decide_compensation(
        recovery.session,
        compensation_id,
        staff,
        approve=approve,
        note=form.note.data,
        booking_loader=recovery.load_booking,
    )
    keep_state(APPROVALS_SCOPE, FormState().say(_("Request approved.") if approve else _("Request rejected.")))
    target = _target(request.form.get("next")) or url_for("recovery.approvals")
    return redirect(target, code=303)


def approve_compensation(compensation_id: str):
    """Approve a request from the queue."""
    return _decide(compensation_id, True)


def reject_compensation(compensation_id: str):
    """Reject a request from the queue."""
    return _decide(compensation_id, False)


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


def create_blueprint() -> Blueprint:
    """The ``recovery`` blueprint: staff pages and static files."""
    bp = Blueprint(
        "recovery",
        __name__,
        template_folder="templates",
        static_folder="static/recovery",
        static_url_path="/static",
    )
    commit_after_request(bp)  # one commit per page request (flask_recovery.unit)
    init_staff_locale(bp)  # every page, message and form error in the staff member's language

    from .journal import register_journal

    register_journal(bp)  # the KPI journal pages

    from .widgets import render_badges

    bp.add_app_template_global(render_badges, "recovery_badges")  # a whole day list's badges at once

    bp.register_error_handler(RecoveryError, _page_error)
    bp.add_url_rule("/bookings/<booking_id>", view_func=booking, methods=["GET"])
    bp.add_url_rule("/bookings/<booking_id>/incidents", view_func=record_incident, methods=["POST"])
    bp.add_url_rule("/incidents/<incident_id>/resolve", view_func=resolve_incident, methods=["POST"])
    bp.add_url_rule("/incidents/<incident_id>/reopen", view_func=reopen_incident, methods=["POST"])
    bp.add_url_rule("/incidents/<incident_id>/compensations", view_func=grant_compensation, methods=["POST"])
    bp.add_url_rule("/clients/<client_id>", view_func=client, methods=["GET"])
    bp.add_url_rule("/flags/<flag_id>/acknowledge", view_func=acknowledge_flag, methods=["POST"])
    bp.add_url_rule("/flags/<flag_id>/lift", view_func=lift_flag, methods=["POST"])
    bp.add_url_rule("/clients/<client_id>/flags", view_func=set_flag, methods=["POST"])
    bp.add_url_rule("/clients/<client_id>/hold", view_func=set_hold, methods=["POST"])
    bp.add_url_rule("/clients/<client_id>/hold/lift", view_func=lift_hold, methods=["POST"])
    bp.add_url_rule("/approvals", view_func=approvals, methods=["GET"])
    bp.add_url_rule("/compensations/<compensation_id>/approve", view_func=approve_compensation, methods=["POST"])
    bp.add_url_rule("/compensations/<compensation_id>/reject", view_func=reject_compensation, methods=["POST"])
    bp.add_url_rule("/budget", view_func=budget, methods=["GET"])
    return bp
