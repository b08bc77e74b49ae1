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


class IncidentForm(FlaskForm):
    """Record an incident on a booking."""

    category = SelectField(_l("What went wrong"), choices=[], validate_choice=False)
    severity = RadioField(_l("How serious"), choices=[], default="minor", validate_choice=False)
    description = TextAreaField(_l("What happened"))
    corrective_action = TextAreaField(_l("What will change (the client is told this)"))
    next = HiddenField()

    def __init__(self, config, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.category.choices = [("", _l("Choose…"))] + [(c, category_label(c)) for c in category_keys(config)]
        self.severity.choices = [(s, severity_label(s)) for s in SEVERITIES]


class ActionForm(FlaskForm):
    """Resolve or reopen an incident, with an optional note."""

    note = TextAreaField(_l("Note (optional)"))
