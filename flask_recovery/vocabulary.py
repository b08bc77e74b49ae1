"""Translated labels for the stable keys, and the 3R script for each category.

Keys (``late``, ``major``, ``resolved`` ...) are stable and used in the API; labels are
translated. A host that replaces the catalogue with ``RECOVERY_CATEGORIES`` may give its
own labels (a string, or a ``{locale: label}`` mapping).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import current_app
from flask_babel import get_locale

from .config import key
from .i18n import lazy_gettext as _l

CATEGORY_LABELS = {
    "late": _l("Late start"),
    "result": _l("Result not as agreed"),
    "communication": _l("Rude or careless communication"),
    "double_booking": _l("Double booking"),
    "cancelled_by_us": _l("Cancelled by us"),
    "hygiene": _l("Hygiene"),
    "billing": _l("Billing error"),
    "product": _l("Product defect"),
    "other": _l("Other"),
    "client_conduct": _l("Client conduct (abuse of staff)"),
}

SEVERITY_LABELS = {
    "minor": _l("Minor"),
    "major": _l("Major"),
    "critical": _l("Critical"),
}

STATUS_LABELS = {
    "open": _l("Open"),
    "resolved": _l("Resolved"),
    "closed": _l("Closed"),
    "reopened": _l("Reopened"),
}

KIND_LABELS = {
    "gift": _l("Compliment (a gift)"),
    "discount": _l("Discount on the next visit"),
    "percent_discount": _l("Percent off the next visit"),
    "redo": _l("Free redo or another master"),
    "refund": _l("Refund"),
}

COMPENSATION_STATUS_LABELS = {
    "granted": _l("Granted"),
    "pending_approval": _l("Waiting for a manager"),
    "rejected": _l("Rejected"),
}

ACTION_LABELS = {
    "incident.recorded": _l("Incident recorded"),
    "incident.resolved": _l("Case resolved"),
    "incident.reopened": _l("Case reopened"),
    "incident.closed": _l("Case closed"),
    "compensation.granted": _l("Compensation granted"),
    "compensation.requested": _l("Approval requested"),
    "compensation.approved": _l("Request approved"),
    "compensation.rejected": _l("Request rejected"),
    "compensation.refused": _l("Compensation refused"),
    "compensation.decision_refused": _l("Decision refused"),
    "voucher.redeemed": _l("Voucher redeemed"),
    "feedback.good": _l("Client answered: all good"),
    "feedback.not_right": _l("Client answered: still not right"),
    "client.unsubscribed": _l("Client unsubscribed from check-in mail"),
}

#: What to say first (Recognize), what to offer (Resolve), what comes next (Reconnect).
_GENERIC_SCRIPT = {
    "recognize": _l("We are sorry. We understand you are upset, and you are right to tell us. We will fix this now."),
    "resolve": _l("Offer the client options to choose from, and say what will change."),
    "reconnect": _l("In a day or two we write to ask whether everything is all right now."),
}

SCRIPTS = {
    "late": {
        "recognize": _l(
            "We apologise: you waited, and your time matters to us. We understand it is "
            "annoying. Let us make the most of your visit now."
        ),
        "resolve": _l(
            "Offer to keep the full service without rushing, or a discount on this or the "
            "next visit. Never blame the previous client."
        ),
        "reconnect": _l("Say that you will check in tomorrow, and note it for the next booking."),
    },
    "result": {
        "recognize": _l(
            "We are sorry the result is not what we agreed. We understand how much it "
            "matters to you, and we will put it right."
        ),
        "resolve": _l(
            "Offer a free redo, now or at a time that suits the client, with the same or another master; "
            "the client chooses."
        ),
        "reconnect": _l("Say that in a day or two we will ask how the client likes the result."),
    },
    "communication": {
        "recognize": _l(
            "We apologise for how we spoke to you. That is not how we want anyone to feel "
            "here, and we will talk to the team about it."
        ),
        "resolve": _l("Apologise personally; offer a small compliment. Do not argue about who said what."),
        "reconnect": _l("A manager checks in within a day or two."),
    },
    "double_booking": {
        "recognize": _l("We are sorry: we booked two people for the same time. It is our mistake, not yours."),
        "resolve": _l("Offer the first free slot with any master, or another day with a discount."),
        "reconnect": _l("Confirm the new time in writing and check in after the visit."),
    },
    "cancelled_by_us": {
        "recognize": _l("We apologise for cancelling your visit. We know you planned your day around it."),
        "resolve": _l("Offer the best free slots first, and a discount on the rebooked visit."),
        "reconnect": _l("Check in after the rebooked visit."),
    },
    "hygiene": {
        "recognize": _l("Thank you for telling us. We are sorry; cleanliness is our duty, and we fix it right now."),
        "resolve": _l("Fix it at once, in front of the client; offer a redo or a discount."),
        "reconnect": _l("A manager checks the room today and writes to the client tomorrow."),
    },
    "billing": {
        "recognize": _l("We are sorry: we charged you wrongly. We will correct it now."),
        "resolve": _l("Correct the bill and refund the difference at once; no paperwork for the client."),
        "reconnect": _l("Confirm the refund in writing."),
    },
    "product": {
        "recognize": _l("We are sorry the product let you down. Thank you for bringing it back."),
        "resolve": _l("Replace it or refund it, whichever the client prefers."),
        "reconnect": _l("Ask in a few days whether the replacement suits the client."),
    },
    "other": _GENERIC_SCRIPT,
    "client_conduct": {
        "recognize": _l(
            "Stay calm and polite; say clearly that the behaviour is not acceptable. "
            "Call the manager on duty. Your safety comes first."
        ),
        "resolve": _l("No compensation is offered for abuse of staff. Write down what was said or done."),
        "reconnect": _l("The next booking carries a warning so that a manager is present."),
    },
}


def category_label(category: str) -> str:
    """The translated label of a category key (host labels win for host categories)."""
    configured = current_app.config.get(key("CATEGORIES"))
    if isinstance(configured, Mapping) and category in configured:
        label = configured[category]
        if isinstance(label, Mapping):
            locale = str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])
            return label.get(locale) or label.get(locale.split("_")[0]) or next(iter(label.values()), category)
        return label
    return str(CATEGORY_LABELS.get(category, category.replace("_", " ").capitalize()))


def severity_label(severity: str) -> str:
    """The translated label of a severity key."""
    return str(SEVERITY_LABELS.get(severity, severity))


def status_label(status: str) -> str:
    """The translated label of an incident status."""
    return str(STATUS_LABELS.get(status, status))


def action_label(action: str) -> str:
    """The translated label of an audit action."""
    return str(ACTION_LABELS.get(action, action))


def script_for(category: str) -> dict[str, str]:
    """The 3R script for a category (a generic one for host categories)."""
    script = SCRIPTS.get(category, _GENERIC_SCRIPT)
    return {step: str(text) for step, text in script.items()}


def kind_label(kind: str) -> str:
    """The translated label of a remedy kind."""
    return str(KIND_LABELS.get(kind, kind))


def compensation_status_label(status: str) -> str:
    """The translated label of a compensation status."""
    return str(COMPENSATION_STATUS_LABELS.get(status, status))
