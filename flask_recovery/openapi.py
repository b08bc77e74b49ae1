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
        404: "Unknown booking or incident",
        409: "The case is not in a state that allows this",
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
            "flags": {"type": "array", "items": {"type": "object"}},
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
                "description": "the reason; required above the staff member's authority",
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
    return {
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
                            "schema": {"type": "string", "pattern": "^(19|20|21)\\d\\d-(0[1-9]|1[0-2])$"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The month", "content": _json(spend)},
                        **_error_responses(401, 403, 422),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Incident": incident,
                "Compensation": compensation,
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
