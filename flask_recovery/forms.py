"""WTForms for the staff pages (Flask-WTF: CSRF protected, honours WTF_CSRF_ENABLED).

The forms only collect input; the rules in :mod:`flask_recovery.domain` validate it,
so the pages and the JSON API refuse exactly the same things.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField

from .config import REMEDY_KINDS, SEVERITIES, category_keys
from .errors import InvalidInput
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
        _scope_ids(self, "".join(ch if ch.isalnum() else "-" for ch in booking_id)[:40])
        return self


class ActionForm(FlaskForm):
    """Resolve or reopen an incident, with an optional note."""

    note = TextAreaField(_l("Note (optional)"))


class CompensationForm(FlaskForm):
    """Grant a remedy, or file a request above one's authority (same form)."""

    kind = SelectField(_l("Remedy"), choices=[], validate_choice=False)
    amount = StringField(_l("Amount"))
    percent = StringField(_l("Percent off the next visit"))
    note = TextAreaField(_l("Reason (required above your authority)"))
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
            raise InvalidInput(gettext("amount: enter a number such as 1500 or 1500.50."), field="amount") from None
        if not value.is_finite() or value.as_tuple().exponent < -digits:
            raise InvalidInput(gettext("amount: enter a number such as 1500 or 1500.50."), field="amount")
        if abs(value) > Decimal(10) ** 12:
            raise InvalidInput(gettext("amount is implausibly large."), field="amount")
        return int(value.scaleb(digits))

    def whole_percent(self) -> int | None:
        """The percent typed, as a whole number; ``None`` if blank."""
        raw = (self.percent.data or "").strip().rstrip("%").strip()
        if not raw:
            return None
        if not raw.isdigit() or len(raw) > 4:
            raise InvalidInput(gettext("percent must be a whole number between 1 and 100."), field="percent")
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
