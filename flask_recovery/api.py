"""The JSON API: the same rules as the pages, for SPA and mobile hosts.

Every POST must be ``Content-Type: application/json`` (415 otherwise): a cross-site HTML
form cannot send that, so cookie-authenticated hosts need no CSRF token here. Errors are
``{"error": {"code", "message", "field"?}}`` with a 4xx status, never a 500 for bad input.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import domain
from .domain import access, flags, holds
from .domain.incidents import client_record
from .errors import InvalidInput, NotFound, RecoveryError
from .i18n import init_staff_locale
from .models import utcnow
from .openapi import openapi_document
from .proxies import get_recovery
from .unit import commit_after_request


class UnsupportedMediaType(RecoveryError):
    """A POST without a JSON body."""

    status = 415
    code = "unsupported_media_type"


#: C0 controls (NUL included) and DEL: never part of an id, a key or a name.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _allowed_methods() -> list[str]:
    """The methods of the API's real routes for this URL (``GET``, ``POST``), not the catch-all's."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ("GET", "POST"):
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "recovery_api.not_found":
            allowed.append(method)
    return allowed


def _json_body(allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not request.get_data(cache=True):
        return {}  # a documented optional body may be left out, Content-Type and all
    if not request.is_json:
        raise UnsupportedMediaType("Send the request body as JSON (Content-Type: application/json).")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # "[[[[..." nested deeper than the JSON decoder goes
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.", field="body")
    return body


def _allowed_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"Unknown field {unknown[0]!r}; allowed: {sorted(allowed)}.", field=unknown[0])


def _body_booking(body: dict[str, Any]):
    """The booking named by ``booking_id`` in a body (``None`` if absent); 422 if unknown."""
    raw = body.get("booking_id")
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("booking_id must be a booking id (a string).", field="booking_id")
    try:
        return get_recovery().load_booking(raw)
    except NotFound:
        raise InvalidInput("booking_id names no booking.", field="booking_id") from None


def _query_booking():
    """The booking of ``?booking=`` (it makes its client known to branch staff), or ``None``."""
    raw = request.args.get("booking")
    if not raw:
        return None
    try:
        return get_recovery().load_booking(raw)
    except NotFound:
        return None


def create_api_blueprint() -> Blueprint:
    """The ``recovery_api`` blueprint (mounted at ``{prefix}/api``).

    A blueprint of its own (not nested) so a host's global ``CSRFProtect`` can exempt it by
    name; :meth:`Recovery.init_app` does so when it finds one.
    """
    api = Blueprint("recovery_api", __name__)
    commit_after_request(api)  # one commit per API call (flask_recovery.unit)
    init_staff_locale(api)  # errors and messages in the staff member's language

    @api.errorhandler(RecoveryError)
    def _recovery_error(error: RecoveryError):
        return jsonify(error.to_dict()), error.status

    @api.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify({"error": {"code": code, "message": error.description}}), error.code

    @api.url_value_preprocessor
    def _refuse_control_characters(endpoint: str | None, values: dict[str, Any] | None) -> None:
        for name, value in (values or {}).items():
            if isinstance(value, str) and _CONTROL.search(value):
                raise InvalidInput(f"{name} must not contain control characters.", field=name)

    @api.before_request
    def _options():
        """``OPTIONS`` tells the methods the URL really has (the catch-all below matches every
        path with every method, so Werkzeug's automatic answer would advertise them all)."""
        if request.method != "OPTIONS":
            return None
        allowed = _allowed_methods()
        if not allowed:
            return jsonify({"error": {"code": "not_found", "message": "No such API endpoint."}}), 404
        response = current_app.response_class(status=204)
        response.headers["Allow"] = ", ".join(
            [*allowed, "HEAD", "OPTIONS"] if "GET" in allowed else [*allowed, "OPTIONS"]
        )
        return response

    @api.get("/openapi.json")
    def openapi():
        """The OpenAPI 3.1 document of this API."""
        return jsonify(openapi_document())

    @api.post("/bookings/<booking_id>/incidents")
    def record_incident(booking_id: str):
        """Record an incident on a booking -> 201 with the incident."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "incident.record")
        booking = recovery.load_booking(booking_id)
        body = _json_body()
        _allowed_fields(body, {"category", "severity", "description", "corrective_action", "conduct"})
        incident = domain.record_incident(
            recovery.session,
            booking,
            staff,
            category=body.get("category"),
            severity=body.get("severity"),
            description=body.get("description"),
            corrective_action=body.get("corrective_action"),
            conduct=body.get("conduct", False),
        )
        return jsonify(incident.to_dict()), 201

    @api.get("/bookings/<booking_id>")
    def booking(booking_id: str):
        """A booking's incidents, compensations, flags, follow-ups and history."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_staff(staff)
        booking = recovery.load_booking(booking_id)
        return jsonify(domain.booking_record(recovery.session, booking, staff))

    def _transition(incident_id: str, action):
        recovery = get_recovery()
        staff = recovery.current_staff()
        body = _json_body(allow_empty=True)
        _allowed_fields(body, {"note"})
        incident = action(recovery.session, incident_id, staff, note=body.get("note"))
        return jsonify(incident.to_dict()), 200

    @api.post("/incidents/<incident_id>/resolve")
    def resolve_incident(incident_id: str):
        """Resolve a case -> 200 (the follow-up clock starts)."""
        return _transition(incident_id, domain.resolve_incident)

    @api.post("/incidents/<incident_id>/reopen")
    def reopen_incident(incident_id: str):
        """Reopen a resolved or closed case -> 200."""
        return _transition(incident_id, domain.reopen_incident)

    @api.post("/incidents/<incident_id>/compensations")
    def grant(incident_id: str):
        """Grant a remedy within the staff member's authority, or file a request above it."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "compensation.request")
        body = _json_body()
        _allowed_fields(body, {"kind", "amount", "percent", "note", "idempotency_key"})
        key = body.get("idempotency_key", request.headers.get("Idempotency-Key"))
        if isinstance(key, str) and _CONTROL.search(key):
            raise InvalidInput("idempotency_key must not contain control characters.", field="idempotency_key")
        compensation, created = domain.grant_compensation(
            recovery.session,
            incident_id,
            recovery.load_booking,
            staff,
            kind=body.get("kind"),
            amount=body.get("amount"),
            percent=body.get("percent"),
            note=body.get("note"),
            idempotency_key=key,
        )
        payload = compensation.to_dict()
        payload["warnings"] = domain.value_warnings(compensation, recovery.load_booking(compensation.booking_id))
        return jsonify(payload), 201 if created else 200

    def _decide(compensation_id: str, approve: bool):
        recovery = get_recovery()
        staff = recovery.current_staff()
        body = _json_body(allow_empty=True)
        _allowed_fields(body, {"note"})
        compensation = domain.decide_compensation(
            recovery.session,
            compensation_id,
            staff,
            approve=approve,
            note=body.get("note"),
            booking_loader=recovery.load_booking,  # the visit's price: refunds never pass it
        )
        return jsonify(compensation.to_dict()), 200

    @api.post("/compensations/<compensation_id>/approve")
    def approve(compensation_id: str):
        """Approve a pending request (the approver's authority must cover it)."""
        return _decide(compensation_id, True)

    @api.post("/compensations/<compensation_id>/reject")
    def reject(compensation_id: str):
        """Reject a pending request."""
        return _decide(compensation_id, False)

    @api.get("/compensations/pending")
    def pending():
        """Requests waiting for a decision (approvers only)."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        return jsonify({"requests": [c.to_dict() for c in domain.pending_requests(recovery.session, staff)]})

    @api.get("/budget")
    def budget():
        """Compensation spend of one month (``?month=YYYY-MM``, default this month)."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "budget.view")
        month = domain.parse_month(request.args.get("month") or domain.month_of(utcnow()))
        return jsonify(domain.month_spend(recovery.session, staff, month))

    # -- clients, flags and booking holds -----------------------------------------------

    @api.get("/clients/<client_id>")
    def client(client_id: str):
        """The client's history: visits (newest first), incidents, remedies, answers, flags."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "client.view")
        return jsonify(client_record(recovery.session, client_id, staff, _query_booking()).to_dict())

    @api.get("/clients/<client_id>/flags")
    def client_flags(client_id: str):
        """The client's active flags, the badge's type, and whether she may book online."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "client.view")
        client_id = access.client_in_scope(recovery.session, client_id, staff, _query_booking())
        show = flags.can_read_conduct(staff)
        active = flags.active_flags(recovery.session, client_id)
        return jsonify(
            {
                "client_id": client_id,
                "display": flags.display_type(active),
                "flags": [flags.flag_to_dict(f, show) for f in active],
                "may_book": _may_book(recovery.session, client_id, staff),
            }
        )

    def _may_book(session, client_id: str, staff) -> dict[str, Any]:
        answer = holds.may_book(session, client_id).to_dict()
        if not holds.can_read_hold_reason(staff):
            answer["reason"] = None  # a manager's note: for conduct readers and hold managers
        return answer

    @api.post("/clients/<client_id>/flags")
    def set_flag(client_id: str):
        """A manager flags the client by hand -> 201 with the flag."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.manage")
        body = _json_body()
        _allowed_fields(body, {"type", "reason", "booking_id", "days"})
        flag = flags.set_flag(
            recovery.session,
            client_id,
            staff,
            type=body.get("type"),
            reason=body.get("reason"),
            booking=_body_booking(body),
            days=body.get("days"),
        )
        return jsonify(flags.flag_to_dict(flag, flags.can_read_conduct(staff))), 201

    @api.post("/flags/<flag_id>/acknowledge")
    def acknowledge_flag(flag_id: str):
        """Staff saw the flag, with an optional note -> 200 with the flag."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.acknowledge")
        body = _json_body(allow_empty=True)
        _allowed_fields(body, {"note", "booking_id"})
        flag = flags.acknowledge_flag(
            recovery.session, flag_id, staff, note=body.get("note"), booking=_body_booking(body)
        )
        return jsonify(flags.flag_to_dict(flag, flags.can_read_conduct(staff)))

    @api.post("/flags/<flag_id>/lift")
    def lift_flag(flag_id: str):
        """A manager lifts a flag, with a reason -> 200 with the flag."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "flag.manage")
        body = _json_body()
        _allowed_fields(body, {"reason"})
        flag = flags.lift_flag(recovery.session, flag_id, staff, reason=body.get("reason"))
        return jsonify(flags.flag_to_dict(flag, flags.can_read_conduct(staff)))

    @api.get("/clients/<client_id>/hold")
    def hold(client_id: str):
        """Whether the client may book online (``may_book``)."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "client.view")
        client_id = access.client_in_scope(recovery.session, client_id, staff, _query_booking())
        return jsonify(_may_book(recovery.session, client_id, staff))

    @api.post("/clients/<client_id>/hold")
    def set_hold(client_id: str):
        """A manager pauses online booking for the client -> 201 with the hold."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "hold.manage")
        body = _json_body()
        _allowed_fields(body, {"reason", "incident_id"})
        hold = holds.set_hold(
            recovery.session, client_id, staff, reason=body.get("reason"), incident_id=body.get("incident_id")
        )
        return jsonify(holds.hold_to_dict(hold)), 201

    @api.post("/clients/<client_id>/hold/lift")
    def lift_hold(client_id: str):
        """A manager allows online booking again -> 200 with the lifted hold."""
        recovery = get_recovery()
        staff = recovery.current_staff()
        domain.require_permission(staff, "hold.manage")
        body = _json_body()
        _allowed_fields(body, {"reason"})
        hold = holds.lift_hold(recovery.session, client_id, staff, reason=body.get("reason"))
        return jsonify(holds.hold_to_dict(hold))

    @api.route("/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def not_found(unknown: str):
        """Unknown API paths (and known paths with a wrong method) answer in JSON too."""
        allowed = _allowed_methods()
        if allowed:
            response = jsonify(
                {"error": {"code": "method_not_allowed", "message": f"Use {' or '.join(allowed)} for this URL."}}
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response, 405
        return jsonify({"error": {"code": "not_found", "message": "No such API endpoint."}}), 404

    return api
