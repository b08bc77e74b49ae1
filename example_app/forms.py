"""The salon's own forms (Flask-WTF: CSRF-protected, honours ``WTF_CSRF_ENABLED``).

Only these forms are CSRF-checked; the app does not install ``CSRFProtect`` globally,
so the extension's JSON API keeps its own rules.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField

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


def csrf_failed(form: FlaskForm) -> bool:
    token = getattr(form, "csrf_token", None)
    return bool(token is not None and token.errors)
