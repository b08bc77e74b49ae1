"""WTForms for the staff pages (Flask-WTF: CSRF protected, honours WTF_CSRF_ENABLED).

The forms only collect input; the rules in :mod:`flask_recovery.domain` validate it,
so the pages and the JSON API refuse exactly the same things.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectField, TextAreaField

from .config import SEVERITIES, category_keys
from .i18n import lazy_gettext as _l
from .vocabulary import category_label, severity_label

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
