"""The salon's own forms (Flask-WTF: CSRF-protected, honours ``WTF_CSRF_ENABLED``).

Only these forms are CSRF-checked; the app does not install ``CSRFProtect`` globally,
so the extension's JSON API keeps its own rules.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, SelectField, TimeField
from wtforms.validators import InputRequired

from .helpers import LANGUAGES
from .staff import staff_choices

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - older WTForms

    def SelectChoice(value, label):  # noqa: N802
        return (value, label)


class LanguageForm(FlaskForm):
    """Two submit buttons named ``lang`` (values ``ru`` / ``en``)."""

    lang = SelectField(choices=[SelectChoice(code, code) for code in LANGUAGES], validate_choice=True)
    next = HiddenField()


class StaffForm(FlaskForm):
    """The demo's role switcher: ``staff`` is one of ``""``, ``olga``, ``irina``, ..."""

    staff = SelectField(choices=[])
    next = HiddenField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.staff.choices = [SelectChoice(value, label) for value, label in staff_choices()]


class CompleteVisitForm(FlaskForm):
    """Checkout: mark the visit as having taken place (only the CSRF token)."""


class BookOnlineForm(FlaskForm):
    """The salon's online booking form (the client picks herself: a demo has no accounts)."""

    client = SelectField(_l("You are"), coerce=int, validators=[InputRequired()])
    service = SelectField(_l("Service"), coerce=int, validators=[InputRequired()])
    master = SelectField(_l("Master"), coerce=int, validators=[InputRequired()])
    day = DateField(_l("Date"), validators=[InputRequired()])
    time = TimeField(_l("Time"), validators=[InputRequired()])

    def fill_choices(self, clients, services, masters, locale: str) -> BookOnlineForm:
        """Offer the salon's clients, services and masters; returns the form."""
        self.client.choices = [SelectChoice(c.id, c.name) for c in clients]
        self.service.choices = [SelectChoice(s.id, s.name(locale)) for s in services]
        self.master.choices = [SelectChoice(m.id, m.name) for m in masters]
        return self


def csrf_failed(form: FlaskForm) -> bool:
    token = getattr(form, "csrf_token", None)
    return bool(token is not None and token.errors)
