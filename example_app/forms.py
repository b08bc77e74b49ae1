"""The salon's own forms (Flask-WTF: CSRF-protected, honours ``WTF_CSRF_ENABLED``).

Only these forms are CSRF-checked; the app does not install ``CSRFProtect`` globally,
so the extension's JSON API keeps its own rules.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, SubmitField

from .helpers import LANGUAGES
from .staff import staff_choices


class LanguageForm(FlaskForm):
    """Two submit buttons named ``lang`` (values ``ru`` / ``en``)."""

    lang = SelectField(choices=[(code, code) for code in LANGUAGES], validate_choice=True)
    next = HiddenField()


class StaffForm(FlaskForm):
    """The demo's role switcher: ``staff`` is one of ``""``, ``olga``, ``irina``, ..."""

    staff = SelectField(_l("Signed in as"), choices=[])
    next = HiddenField()
    submit = SubmitField(_l("Switch"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.staff.choices = staff_choices()


class CompleteVisitForm(FlaskForm):
    """Checkout: mark the visit as having taken place."""

    submit = SubmitField(_l("Mark visit completed"))


def csrf_failed(form: FlaskForm) -> bool:
    token = getattr(form, "csrf_token", None)
    return bool(token is not None and token.errors)
