"""WTForms for the staff pages (Flask-WTF: CSRF protected, honours WTF_CSRF_ENABLED), and
the state a widget form leaves for the page it returns to.

The forms collect input; the rules in :mod:`flask_recovery.domain` decide, so the pages
and the JSON API refuse exactly the same things. Before calling a rule a form checks
each of its fields with the rules' own limits (``problems()``), so the staff member sees
every mistake at once, in her language, next to its field; a rule that still refuses
(the visit's price, what was already given) adds its own message, translated by the rule,
to its field (:func:`field_message`).

After a POST the widget returns to the page it came from (Post/Redirect/Get): what the
staff member should read there (a confirmation, the mistakes, what she typed) is kept in
the Flask session under :data:`STATE_KEY`, per booking or client, and read once by the
widget or page that shows it (:func:`keep_state`, :func:`take_state`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import get_currency_precision
from flask import current_app, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField

from .config import REMEDY_KINDS, SEVERITIES, category_keys
from .errors import CHOICE_MESSAGES, REQUIRED_MESSAGES, InvalidInput, RecoveryError
from .i18n import gettext
from .i18n import lazy_gettext as _l
from .vocabulary import category_label, kind_label, severity_label

try:  # WTForms >= 3.3 declares options as SelectChoice; older ones take (value, label)
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value, label):  # noqa: N802
        return (value, label)


def _scope_ids(form, scope: str) -> None:
    """Give every field an id unique on a host page (``recovery-b1-category``)."""
    for field in form:
        field.id = f"recovery-{scope}-{field.name}"
        field.label.field_id = field.id


class IncidentForm(FlaskForm):
    """Record an incident on a booking."""

    category = SelectField(_l("What went wrong"), choices=[], validate_choice=False)
    severity = RadioField(_l("How serious"), choices=[], default="minor", validate_choice=False)
    description = TextAreaField(_l("What happened"))
    corrective_action = TextAreaField(_l("What will change (the client is told this)"))
    next = HiddenField()

    def __init__(self, config, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.category.choices = [_Choice("", _l("Choose…"))] + [
            _Choice(c, category_label(c)) for c in category_keys(config)
        ]
        self.severity.choices = [_Choice(s, severity_label(s)) for s in SEVERITIES]

    def scope(self, booking_id: str) -> IncidentForm:
        """Make the field ids unique for this booking's widget; returns the form."""
        _scope_ids(self, scope_slug(booking_id))
        return self

    def typed(self) -> dict[str, Any]:
        """What was typed, to show again after a mistake."""
        return {name: getattr(self, name).data for name in ("category", "severity", "description", "corrective_action")}

    def problems(self, config: Mapping[str, Any]) -> dict[str, list[str]]:
        """Every field's mistake at once (by field name), translated; empty when the rule may run."""
        errors: dict[str, list[str]] = {}
        category = self.category.data
        if not category:
            errors["category"] = [str(_REQUIRED["category"])]
        elif category not in category_keys(config):
            errors["category"] = [str(_CHOICE["category"])]
        if self.severity.data not in SEVERITIES:
            errors["severity"] = [str(_CHOICE["severity"])]
        _check_text(errors, "description", self.description.data, required=True)
        _check_text(errors, "corrective_action", self.corrective_action.data, required=False)
        return errors


class ActionForm(FlaskForm):
    """Resolve or reopen an incident, with an optional note."""

    note = TextAreaField(_l("Note (optional)"))


class CompensationForm(FlaskForm):
    """Grant a remedy, or file a request above one's authority (same form)."""

    kind = SelectField(_l("Remedy"), choices=[], validate_choice=False)
    amount = StringField(_l("Amount"))
    percent = StringField(_l("Percent off the next visit"))
    note = TextAreaField(_l("Note (optional: a manager reads it with a request)"))
    idempotency_key = HiddenField()
    next = HiddenField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = [_Choice(k, kind_label(k)) for k in REMEDY_KINDS]
        if not self.idempotency_key.data:
            self.idempotency_key.data = uuid.uuid4().hex

    def scope(self, incident_id: int) -> CompensationForm:
        """Make the field ids unique for this incident's form; returns the form."""
        _scope_ids(self, f"c{incident_id}")
        return self

    def typed(self) -> dict[str, Any]:
        """What was typed (the idempotency key too: a second press after a mistake spends once)."""
        return {name: getattr(self, name).data for name in ("kind", "amount", "percent", "note", "idempotency_key")}

    def problems(self, booking: Any, currency: str) -> dict[str, list[str]]:
        """Every field's mistake at once, translated: the kind, the amount and percent as
        typed and as the rule values them for this booking (``value_of``), the note."""
        from .domain.compensations import value_of

        errors: dict[str, list[str]] = {}
        kind = self.kind.data
        if kind not in REMEDY_KINDS:
            errors["kind"] = [str(_REQUIRED["kind"] if not kind else _CHOICE["kind"])]
        amount = percent = None
        try:
            amount = self.minor_units(currency)
        except InvalidInput as error:
            errors["amount"] = [field_message(error, "amount")]
        try:
            percent = self.whole_percent()
        except InvalidInput as error:
            errors["percent"] = [field_message(error, "percent")]
        if "kind" not in errors:  # the rule's view of what parsed (a field already wrong keeps its error)
            try:
                value_of(
                    kind, None if "amount" in errors else amount, None if "percent" in errors else percent, booking
                )
            except InvalidInput as error:
                name = error.field or "amount"
                errors.setdefault(name, [field_message(error, name)])
        _check_text(errors, "note", self.note.data, required=False)
        return errors

    def minor_units(self, currency: str) -> int | None:
        """The amount typed in major units (``1 500,50``) as minor units; ``None`` if blank.

        Raises :class:`~flask_recovery.errors.InvalidInput` for text that is not money.
        """
        raw = (self.amount.data or "").strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
        if not raw:
            return None
        digits = get_currency_precision(currency)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InvalidInput(
                gettext("amount: enter a number such as 1500 or 1500.50."), field="amount", code="not_a_number"
            ) from None
        if not value.is_finite() or value.as_tuple().exponent < -digits:
            raise InvalidInput(
                gettext("amount: enter a number such as 1500 or 1500.50."), field="amount", code="not_a_number"
            )
        if abs(value) > Decimal(10) ** 12:
            raise InvalidInput(gettext("This amount is implausibly large."), field="amount", code="too_large")
        return int(value.scaleb(digits))

    def whole_percent(self) -> int | None:
        """The percent typed, as a whole number; ``None`` if blank."""
        raw = (self.percent.data or "").strip().rstrip("%").strip()
        if not raw:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 4:  # "²".isdigit() is True, int("²") fails
            raise InvalidInput(
                gettext("percent must be a whole number between 1 and 100."), field="percent", code="not_whole_number"
            )
        return int(raw)


class DecisionForm(FlaskForm):
    """Approve or reject a request for approval, with an optional note."""

    note = TextAreaField(_l("Note to the requester (optional)"))


class AcknowledgeForm(FlaskForm):
    """Mark a flag as seen on a booking, with an optional note ("seen, compliment offered")."""

    note = TextAreaField(_l("What you did (optional)"))
    booking_id = HiddenField()
    next = HiddenField()


class ReasonForm(FlaskForm):
    """Lift a flag, or set or lift a booking hold: a reason is required."""

    reason = TextAreaField(_l("Reason"))
    next = HiddenField()


class FlagForm(FlaskForm):
    """A manager flags a client by hand: the type and a reason."""

    type = RadioField(_l("Flag"), choices=[], default="vip", validate_choice=False)
    reason = TextAreaField(_l("Reason (a colleague reads it at the desk)"))
    booking_id = HiddenField()
    next = HiddenField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.type.choices = [
            _Choice("vip", _l("Extra attention (VIP)")),
            _Choice("conduct", _l("Conduct warning (manager on duty)")),
        ]


def scope_slug(value: str) -> str:
    """``value`` as a piece of an HTML id (letters, digits and ``-``; at most 40)."""
    return "".join(ch if ch.isalnum() else "-" for ch in str(value))[:40]


# -- messages: the rules' refusals as the staff member reads them ------------------------
# The rules raise their refusals translated, with a stable code (flask_recovery.errors);
# the forms use the rules' own tables for what they check first, so both say the same.

_REQUIRED = REQUIRED_MESSAGES
_CHOICE = CHOICE_MESSAGES


def field_message(error: RecoveryError, field_name: str | None = None) -> str:
    """The message of a rule's refusal as the staff member reads it beside a field (the
    rules write it in her language already)."""
    return str(error.message)


def _check_text(errors: dict[str, list[str]], name: str, value: Any, *, required: bool) -> None:
    """A free-text field checked by the rules' own ``clean_text``; its mistake filed under ``name``."""
    from .domain.incidents import clean_text

    try:
        clean_text(value, name, required=required)
    except InvalidInput as error:
        errors[name] = [field_message(error, name)]


# -- the state a widget form leaves for the page it returns to ----------------------------

#: The Flask session key of the kept state: ``{scope: entry}``, ``scope`` being
#: ``booking:<id>``, ``client:<id>`` or ``approvals``.
STATE_KEY = "recovery.forms"
#: A state nobody showed within this many seconds is dropped.
STATE_MAX_AGE = 15 * 60
#: At most this many scopes are kept at once (the oldest goes first).
STATE_MAX_SCOPES = 5
#: At most this many messages wait for one scope.
STATE_MAX_MESSAGES = 6


def booking_scope(booking_id: Any) -> str:
    """The state scope of a booking's widget (on the host's page or the booking page)."""
    return f"booking:{booking_id}"


def client_scope(client_id: Any) -> str:
    """The state scope of a client's history page."""
    return f"client:{client_id}"


@dataclass
class FormState:
    """What a POST leaves for the page it returns to: messages, and the form it refused
    with its mistakes (by field) and what was typed.

    ``form`` names the form on the page (``incident``, ``grant-12``, ``ack-3``, ...);
    each message is ``{"text", "level", "at"}`` with ``level`` ``ok``, ``warning`` or
    ``error`` and ``at`` the id of the element it belongs to (the redirect's anchor).
    """

    form: str | None = None
    errors: dict[str, list[str]] = _field(default_factory=dict)
    typed: dict[str, Any] = _field(default_factory=dict)
    messages: list[dict[str, str]] = _field(default_factory=list)

    def say(self, text: Any, level: str = "ok", at: str | None = None) -> FormState:
        """Add a message (translated text) shown at the element ``at``; returns the state."""
        self.messages.append({"text": str(text), "level": level, "at": at or ""})
        return self

    def value(self, form: str, name: str, default: Any = "") -> Any:
        """What was typed into ``name`` of ``form``, or ``default``."""
        if self.form != form:
            return default
        value = self.typed.get(name)
        return default if value is None else value

    def errors_for(self, form: str, name: str) -> list[str]:
        """The mistakes of ``name`` in ``form`` (empty for another form)."""
        return list(self.errors.get(name, ())) if self.form == form else []

    def messages_at(self, anchors: set[str], default: str) -> dict[str, list[dict[str, str]]]:
        """The messages grouped by the element they are shown at; one whose element is not
        among ``anchors`` goes to ``default`` (the top of the widget or page)."""
        grouped: dict[str, list[dict[str, str]]] = {}
        for message in self.messages:
            at = message.get("at") if message.get("at") in anchors else default
            grouped.setdefault(at, []).append(message)
        return grouped

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "errors": self.errors, "typed": self.typed, "messages": self.messages}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FormState:
        def texts(values: Any) -> list[str]:
            return [str(v) for v in values] if isinstance(values, list) else []

        errors = data.get("errors") if isinstance(data.get("errors"), Mapping) else {}
        typed = data.get("typed") if isinstance(data.get("typed"), Mapping) else {}
        messages = data.get("messages") if isinstance(data.get("messages"), list) else []
        return cls(
            form=data.get("form") if isinstance(data.get("form"), str) else None,
            errors={str(k): texts(v) for k, v in errors.items()},
            typed={str(k): v for k, v in typed.items() if v is None or isinstance(v, str)},
            messages=[dict(m) for m in messages if isinstance(m, Mapping) and isinstance(m.get("text"), str)],
        )


def _session_usable() -> bool:
    return not current_app.session_interface.is_null_session(session)


def _fits_in_cookie() -> bool:
    """Whether the session, as it is now, still fits in its cookie (a cookie session only)."""
    interface = current_app.session_interface
    if not isinstance(interface, SecureCookieSessionInterface):
        return True  # a server-side session (Flask-Session and the like) has room
    serializer = interface.get_signing_serializer(current_app)
    if serializer is None:
        return False
    value = serializer.dumps(dict(session))
    # the cookie's name, value and attributes (path, domain, flags), as Werkzeug measures it
    size = len(interface.get_cookie_name(current_app)) + len(value) + 200
    return size <= current_app.config.get("MAX_COOKIE_SIZE", 4093)


def keep_state(scope: str, state: FormState) -> bool:
    """Keep ``state`` in the session for the next page that shows ``scope``.

    Messages already waiting there are kept before the new ones; a refused form replaces
    an earlier one. ``False`` (and nothing kept) when the app has no session (no
    ``SECRET_KEY``) or when what was typed would not fit in the session cookie: the
    caller then shows the page itself.
    """
    if not _session_usable():
        return False
    now = int(time.time())
    before = session.get(STATE_KEY)
    store = {
        name: entry
        for name, entry in (before.items() if isinstance(before, Mapping) else ())
        if isinstance(entry, Mapping) and isinstance(entry.get("at"), int) and now - entry["at"] < STATE_MAX_AGE
    }
    earlier = store.pop(scope, None)
    messages = list(earlier.get("messages") or []) if earlier else []
    entry = state.to_dict()
    entry["messages"] = (messages + entry["messages"])[-STATE_MAX_MESSAGES:]
    if state.form is None and earlier and earlier.get("form"):
        entry.update(form=earlier["form"], errors=earlier.get("errors"), typed=earlier.get("typed"))
    entry["at"] = now
    store[scope] = entry
    while len(store) > STATE_MAX_SCOPES:
        store.pop(next(iter(store)))
    session[STATE_KEY] = store
    if _fits_in_cookie():
        return True
    if before is None:
        session.pop(STATE_KEY, None)
    else:
        session[STATE_KEY] = before
    return False


def take_state(scope: str) -> FormState | None:
    """The state kept for ``scope``, removed from the session (shown once); ``None`` if none."""
    if not _session_usable():
        return None
    store = session.get(STATE_KEY)
    if not isinstance(store, Mapping) or scope not in store:
        return None
    rest = {name: entry for name, entry in store.items() if name != scope}
    if rest:
        session[STATE_KEY] = rest
    else:
        session.pop(STATE_KEY, None)
    entry = store[scope]
    if not isinstance(entry, Mapping) or not isinstance(entry.get("at"), int):
        return None
    if int(time.time()) - entry["at"] >= STATE_MAX_AGE:
        return None
    return FormState.from_dict(entry)
