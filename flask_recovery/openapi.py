"""The OpenAPI 3.1 document of the JSON API (served at ``{prefix}/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from flask import current_app, url_for

from .config import REMEDY_KINDS, SEVERITIES, category_keys

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request",
        401: "No staff member is logged in",
        403: "The role may not do this",
        404: "Unknown booking, incident, client or flag",
        409: "The case, flag or hold is not in a state that allows this",
        415: "The body is not JSON",
        422: "A field is missing or invalid; error.field names it",
    }
    return {
        str(code): {"description": text[code], "content": {"application/json": {"schema": _ERROR}}} for code in codes
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi_document() -> dict[str, Any]:
    """Build the document for the current app (its prefix and category catalogue)."""
    base = url_for("recovery_api.openapi").rsplit("/openapi.json", 1)[0]
    nullable_str = {"type": ["string", "null"]}
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    incident = {
        "type": "object",
        "required": ["id", "booking_id", "category", "severity", "status", "conduct"],
        "properties": {
            "id": {"type": "integer"},
            "booking_id": {"type": "string"},
            "client_id": {"type": "string"},
            "category": {"type": "string"},
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "conduct": {"type": "boolean"},
            "description": nullable_str,
            "corrective_action": nullable_str,
            "status": {"type": "string", "enum": ["open", "resolved", "closed", "reopened"]},
            "recorded_by": {"type": "string"},
            "recorded_by_name": nullable_str,
            "visit_ended_at": {"type": "string", "format": "date-time"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "resolved_at": nullable_time,
            "resolved_by": nullable_str,
            "resolution_note": nullable_str,
            "reopen_note": nullable_str,
            "closed_at": nullable_time,
            "reopened_at": nullable_time,
            "minutes_to_recognition": {"type": ["integer", "null"]},
            "minutes_to_resolution": {"type": ["integer", "null"]},
            "restricted": {"type": "boolean"},
        },
    }
    max_len = current_app.config["RECOVERY_MAX_TEXT_LENGTH"]
    new_incident = {
        "type": "object",
        "additionalProperties": False,
        "required": ["severity", "description"],
        # a category, unless conduct: true says it (client_conduct)
        "anyOf": [{"required": ["category"]}, {"required": ["conduct"], "properties": {"conduct": {"const": True}}}],
        "properties": {
            "category": {"type": "string", "enum": category_keys(current_app.config)},
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "description": {"type": "string", "minLength": 1, "maxLength": max_len},
            "corrective_action": {"type": ["string", "null"], "maxLength": max_len},
            "conduct": {"type": "boolean", "description": "true records client abuse of staff"},
        },
    }
    note = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"note": {"type": ["string", "null"], "maxLength": max_len}},
    }
    booking_record = {
        "type": "object",
        "required": ["booking", "incidents", "compensations", "flags", "followups", "history"],
        "properties": {
            "booking": {"type": "object"},
            "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}},
            "compensations": {"type": "array", "items": {"type": "object"}},
            "flags": {
                "type": "array",
                "description": "the client's active flags; applies: the flag is for this visit (its badge shows it)",
                "items": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Flag"},
                        {"type": "object", "required": ["applies"], "properties": {"applies": {"type": "boolean"}}},
                    ]
                },
            },
            "followups": {"type": "array", "items": {"type": "object"}},
            "history": {"type": "array", "items": {"type": "object"}},
        },
    }
    incident_ref = {"$ref": "#/components/schemas/Incident"}
    booking_id = {"name": "booking_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
    incident_id = {"name": "incident_id", "in": "path", "required": True, "schema": {"type": "integer"}}

    def transition(summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [incident_id],
                "requestBody": {"required": False, "content": _json(note)},
                "responses": {
                    "200": {"description": "The incident", "content": _json(incident_ref)},
                    **_error_responses(400, 401, 403, 404, 409, 415, 422),
                },
            }
        }

    comp_ref = {"$ref": "#/components/schemas/Compensation"}
    compensation = {
        "type": "object",
        "required": ["id", "incident_id", "booking_id", "kind", "amount", "currency", "status"],
        "properties": {
            "id": {"type": "integer"},
            "incident_id": {"type": "integer"},
            "booking_id": {"type": "string"},
            "kind": {"type": "string", "enum": list(REMEDY_KINDS)},
            "amount": {"type": "integer", "description": "value in minor units"},
            "percent": {"type": ["integer", "null"]},
            "currency": {"type": "string"},
            "status": {"type": "string", "enum": ["granted", "pending_approval", "rejected"]},
            "note": nullable_str,
            "requested_by": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "decided_by": nullable_str,
            "decided_at": nullable_time,
            "decision_note": nullable_str,
            "voucher_code": nullable_str,
            "voucher_expires_at": nullable_time,
            "redeemed_at": nullable_time,
            "redeemed_booking_id": nullable_str,
            "warnings": {"type": "array", "items": {"type": "string", "enum": ["above_150_percent"]}},
        },
    }
    new_compensation = {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind"],
        "properties": {
            "kind": {"type": "string", "enum": list(REMEDY_KINDS)},
            "amount": {"type": "integer", "minimum": 1, "description": "gift, discount, refund: minor units"},
            "percent": {"type": "integer", "minimum": 1, "maximum": 100, "description": "percent_discount"},
            "note": {
                "type": ["string", "null"],
                "maxLength": max_len,
                "description": "optional: a word for the manager when it goes above one's authority",
            },
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 64},
        },
    }
    compensation_id = {"name": "compensation_id", "in": "path", "required": True, "schema": {"type": "integer"}}

    def decision(summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [compensation_id],
                "requestBody": {"required": False, "content": _json(note)},
                "responses": {
                    "200": {"description": "The compensation", "content": _json(comp_ref)},
                    **_error_responses(400, 401, 403, 404, 409, 415, 422),
                },
            }
        }

    spend = {
        "type": "object",
        "required": ["month", "currency", "staff", "total", "budget", "left", "pending_requests"],
        "properties": {
            "month": {"type": "string"},
            "currency": {"type": "string"},
            "staff": {"type": "array", "items": {"type": "object"}},
            "total": {"type": "integer"},
            "budget": {"type": ["integer", "null"]},
            "left": {"type": ["integer", "null"]},
            "pending_requests": {"type": "integer"},
        },
    }
    flag = {
        "type": "object",
        "required": ["id", "client_id", "type", "status", "state", "reason", "restricted", "source", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "client_id": {"type": "string"},
            "type": {"type": "string", "enum": ["vip", "conduct"]},
            "status": {"type": "string", "enum": ["active", "used", "lifted", "void"]},
            "state": {
                "type": "string",
                "enum": ["active", "expired", "used", "lifted", "void"],
                "description": "status, with an active flag past expires_at shown as expired",
            },
            "reason": {"type": ["string", "null"], "description": "what a colleague reads at the desk"},
            "restricted": {
                "type": "boolean",
                "description": "a conduct note the role may not read: reason is a generic warning",
            },
            "source": {"type": "string", "enum": ["incident", "manual"]},
            "incident_id": {"type": ["integer", "null"]},
            "booking_id": {"type": ["string", "null"], "description": "the booking it was set on"},
            "set_by": nullable_str,
            "set_by_name": nullable_str,
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": nullable_time,
            "acknowledged_at": nullable_time,
            "acknowledged_by": nullable_str,
            "acknowledged_by_name": nullable_str,
            "acknowledgement": nullable_str,
            "used_at": nullable_time,
            "used_booking_id": nullable_str,
            "lifted_at": nullable_time,
            "lifted_by": nullable_str,
            "lift_reason": nullable_str,
        },
    }
    flag_ref = {"$ref": "#/components/schemas/Flag"}
    may_book = {
        "type": "object",
        "required": ["allowed", "reason", "hold_id", "set_at"],
        "properties": {
            "allowed": {"type": "boolean", "description": "false: a manager asked to route her to a phone call"},
            "reason": {"type": ["string", "null"], "description": "the manager's note (conduct readers, managers)"},
            "hold_id": {"type": ["integer", "null"]},
            "set_at": nullable_time,
        },
    }
    hold = {
        "type": "object",
        "required": ["id", "client_id", "active", "reason", "set_by", "set_at"],
        "properties": {
            "id": {"type": "integer"},
            "client_id": {"type": "string"},
            "active": {"type": "boolean"},
            "reason": nullable_str,
            "incident_id": {"type": ["integer", "null"]},
            "set_by": {"type": "string"},
            "set_at": {"type": "string", "format": "date-time"},
            "lifted_by": nullable_str,
            "lifted_at": nullable_time,
            "lift_reason": nullable_str,
        },
    }
    client_flags = {
        "type": "object",
        "required": ["client_id", "display", "flags", "may_book"],
        "properties": {
            "client_id": {"type": "string"},
            "display": {
                "type": ["string", "null"],
                "enum": ["vip", "conduct", None],
                "description": "what the badge shows: conduct wins over vip",
            },
            "flags": {"type": "array", "items": flag_ref},
            "may_book": {"$ref": "#/components/schemas/MayBook"},
        },
    }
    visit = {
        "type": "object",
        "required": ["booking_id", "starts_at", "status", "incidents", "followups", "flags_used"],
        "properties": {
            "booking_id": {"type": "string"},
            "starts_at": nullable_time,
            "ends_at": nullable_time,
            "status": {"type": ["string", "null"]},
            "location": nullable_str,
            "staff_id": nullable_str,
            "completed_at": nullable_time,
            "incidents": {
                "type": "array",
                "items": {
                    "allOf": [
                        incident_ref,
                        {
                            "type": "object",
                            "required": ["compensations"],
                            "properties": {"compensations": {"type": "array", "items": comp_ref}},
                        },
                    ]
                },
            },
            "followups": {"type": "array", "items": {"type": "object"}},
            "flags_used": {"type": "array", "items": {"type": "integer"}},
        },
    }
    client_history = {
        "type": "object",
        "required": ["client_id", "display", "may_book", "active_flags", "past_flags", "holds", "visits"],
        "properties": {
            "client_id": {"type": "string"},
            "display": {"type": ["string", "null"], "enum": ["vip", "conduct", None]},
            "may_book": {"$ref": "#/components/schemas/MayBook"},
            "active_flags": {"type": "array", "items": flag_ref},
            "past_flags": {"type": "array", "items": flag_ref},
            "holds": {"type": "array", "items": {"$ref": "#/components/schemas/BookingHold"}},
            "visits": {"type": "array", "description": "newest first", "items": visit},
        },
    }
    new_flag = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "reason"],
        "properties": {
            "type": {"type": "string", "enum": ["vip", "conduct"]},
            "reason": {"type": "string", "minLength": 1, "maxLength": max_len},
            "booking_id": {"type": "string", "maxLength": 64, "description": "the booking it is set on"},
            "days": {"type": "integer", "minimum": 1, "maximum": 365, "description": "default RECOVERY_VIP_DAYS"},
        },
    }
    acknowledgement = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "note": {"type": ["string", "null"], "maxLength": max_len, "description": "seen, compliment offered"},
            "booking_id": {"type": "string", "maxLength": 64, "description": "the booking it was seen on"},
        },
    }
    reason = {
        "type": "object",
        "additionalProperties": False,
        "required": ["reason"],
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": max_len}},
    }
    new_hold = {
        "type": "object",
        "additionalProperties": False,
        "required": ["reason"],
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": max_len},
            "incident_id": {"type": "integer", "description": "the client's incident behind it"},
        },
    }
    client_id = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
    booking_query = {
        "name": "booking",
        "in": "query",
        "required": False,
        "description": "one of her bookings you may see (makes her known to branch staff)",
        "schema": {"type": "string", "maxLength": 64},
    }
    flag_id = {"name": "flag_id", "in": "path", "required": True, "schema": {"type": "integer"}}

    def flag_action(summary: str, body: dict[str, Any], required: bool) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [flag_id],
                "requestBody": {"required": required, "content": _json(body)},
                "responses": {
                    "200": {"description": "The flag", "content": _json(flag_ref)},
                    **_error_responses(400, 401, 403, 404, 409, 415, 422),
                },
            }
        }

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "flask-recovery API", "version": "1"},
        "servers": [{"url": base}],
        "paths": {
            "/bookings/{booking_id}/incidents": {
                "post": {
                    "summary": "Record an incident on a booking",
                    "parameters": [booking_id],
                    "requestBody": {"required": True, "content": _json(new_incident)},
                    "responses": {
                        "201": {"description": "The new incident", "content": _json(incident_ref)},
                        **_error_responses(400, 401, 403, 404, 415, 422),
                    },
                }
            },
            "/bookings/{booking_id}": {
                "get": {
                    "summary": "Everything recorded on a booking",
                    "parameters": [booking_id],
                    "responses": {
                        "200": {"description": "The booking's record", "content": _json(booking_record)},
                        **_error_responses(401, 404),
                    },
                }
            },
            "/incidents/{incident_id}/resolve": transition("Resolve a case (the follow-up clock starts)"),
            "/incidents/{incident_id}/reopen": transition("Reopen a resolved or closed case"),
            "/incidents/{incident_id}/compensations": {
                "post": {
                    "summary": "Grant a remedy within one's authority, or file a request above it",
                    "parameters": [
                        incident_id,
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 64},
                        },
                    ],
                    "requestBody": {"required": True, "content": _json(new_compensation)},
                    "responses": {
                        "201": {"description": "Granted or pending_approval", "content": _json(comp_ref)},
                        "200": {
                            "description": "A repeated idempotency key: the earlier one",
                            "content": _json(comp_ref),
                        },
                        **_error_responses(400, 401, 403, 404, 409, 415, 422),
                    },
                }
            },
            "/compensations/{compensation_id}/approve": decision("Approve a pending request"),
            "/compensations/{compensation_id}/reject": decision("Reject a pending request"),
            "/compensations/pending": {
                "get": {
                    "summary": "Requests waiting for a decision",
                    "responses": {
                        "200": {
                            "description": "Oldest first",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["requests"],
                                    "properties": {"requests": {"type": "array", "items": comp_ref}},
                                }
                            ),
                        },
                        **_error_responses(401, 403),
                    },
                }
            },
            "/budget": {
                "get": {
                    "summary": "Compensation spend of a month per staff member and against the plan",
                    "parameters": [
                        {
                            "name": "month",
                            "in": "query",
                            "required": False,
                            "description": "YYYY-MM; absent or empty: this month",
                            "schema": {"type": "string", "pattern": "^((19|20|21)\\d\\d-(0[1-9]|1[0-2]))?$"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The month", "content": _json(spend)},
                        **_error_responses(401, 403, 422),
                    },
                }
            },
            "/clients/{client_id}": {
                "get": {
                    "summary": "The client's history: visits newest first, incidents, remedies, answers, flags",
                    "parameters": [client_id, booking_query],
                    "responses": {
                        "200": {"description": "Her record", "content": _json(client_history)},
                        **_error_responses(401, 403, 404),
                    },
                }
            },
            "/clients/{client_id}/flags": {
                "get": {
                    "summary": "The client's active flags and whether she may book online",
                    "parameters": [client_id, booking_query],
                    "responses": {
                        "200": {"description": "Active flags", "content": _json(client_flags)},
                        **_error_responses(401, 403, 404),
                    },
                },
                "post": {
                    "summary": "Flag the client by hand (managers)",
                    "parameters": [client_id],
                    "requestBody": {"required": True, "content": _json(new_flag)},
                    "responses": {
                        "201": {"description": "The new flag", "content": _json(flag_ref)},
                        **_error_responses(400, 401, 403, 404, 415, 422),
                    },
                },
            },
            "/flags/{flag_id}/acknowledge": flag_action("Mark a flag as seen, with a note", acknowledgement, False),
            "/flags/{flag_id}/lift": flag_action("Lift a flag, with a reason (managers)", reason, True),
            "/clients/{client_id}/hold": {
                "get": {
                    "summary": "Whether the client may book online",
                    "parameters": [client_id, booking_query],
                    "responses": {
                        "200": {
                            "description": "The answer",
                            "content": _json({"$ref": "#/components/schemas/MayBook"}),
                        },
                        **_error_responses(401, 403, 404),
                    },
                },
                "post": {
                    "summary": "Pause online booking for the client, with a reason (managers)",
                    "parameters": [client_id],
                    "requestBody": {"required": True, "content": _json(new_hold)},
                    "responses": {
                        "201": {
                            "description": "The hold",
                            "content": _json({"$ref": "#/components/schemas/BookingHold"}),
                        },
                        **_error_responses(400, 401, 403, 404, 409, 415, 422),
                    },
                },
            },
            "/clients/{client_id}/hold/lift": {
                "post": {
                    "summary": "Allow online booking again, with a reason (managers)",
                    "parameters": [client_id],
                    "requestBody": {"required": True, "content": _json(reason)},
                    "responses": {
                        "200": {
                            "description": "The lifted hold",
                            "content": _json({"$ref": "#/components/schemas/BookingHold"}),
                        },
                        **_error_responses(400, 401, 403, 404, 409, 415, 422),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Incident": incident,
                "Compensation": compensation,
                "Flag": flag,
                "MayBook": may_book,
                "BookingHold": hold,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
    }
    # an id in the path with a control character (NUL...) is a 422 naming it (api.py)
    for operations in document["paths"].values():
        for operation in operations.values():
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                operation["responses"].setdefault("422", _error_responses(422)["422"])
    return document
