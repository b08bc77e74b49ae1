"""The client's pages behind the links of her check-in mail: answer and unsubscribe.

No staff login here: the signed token in the URL is the authorization. Opening a link
changes nothing (mail scanners open links); the page asks for one press, a POST. The
pages speak the client's language (the follow-up's locale) and extend
``recovery/client_base.html`` (never the host's staff layout). A tampered link
answers 400, an expired one 410, a used or voided one 409, each with a friendly page
(``recovery/link_invalid.html``); too many requests from one address answer 429 (``recovery/rate_limited.html``, see
:mod:`flask_recovery.ratelimit`).

The blueprint ``recovery_answers`` is mounted at ``RECOVERY_URL_PREFIX`` beside the staff
pages. The unsubscribe POST also serves RFC 8058 one-click unsubscribe from mail clients,
which cannot send a CSRF token, so it is exempt from a host's global ``CSRFProtect``;
the browser form on the same URL still carries and checks one.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template, request
from flask_babel import force_locale
from flask_wtf import FlaskForm
from werkzeug.exceptions import TooManyRequests
from wtforms import RadioField, TextAreaField

from .domain import feedback
from .errors import InvalidInput
from .followup_mail import client_locale, salon_name
from .forms import _Choice
from .i18n import gettext as _
from .i18n import lazy_gettext as _l
from .models import FollowUp
from .proxies import get_recovery
from .tokens import InvalidLink, read_token
from .unit import commit_after_request

#: Where a host's ``CSRFProtect`` finds the one-click view (``module.function``).
ONE_CLICK_VIEW = f"{__name__}.unsubscribe_confirm"


class AnswerForm(FlaskForm):
    """The client's answer: the choice from the mail's button, and an optional comment."""

    choice = RadioField(
        _l("Your answer"),
        choices=[_Choice("good", _l("All good")), _Choice("not_right", _l("Still not right"))],
    )
    comment = TextAreaField(_l("Anything you would like to tell us? (optional)"))


class UnsubscribeForm(FlaskForm):
    """One button; the CSRF token is its only field."""


def _render(template: str, status: int = 200, followup: FollowUp | None = None, **context):
    """Render a client page in her language (the follow-up's, else the browser's)."""
    context.setdefault("salon", salon_name())
    if followup is None:
        return render_template(template, **context), status
    with force_locale(client_locale(followup)):
        return render_template(template, followup=followup, **context), status


def _expired(form: FlaskForm) -> None:
    """Say why a form with a stale or missing CSRF token was refused, in the client's words."""
    if "csrf_token" in form:
        form.csrf_token.errors = [_("The page had expired. Please press the button again.")]


def _link_problem(error: InvalidLink, followup: FollowUp | None = None):
    return _render("recovery/link_invalid.html", error.status, followup, error=error)


def _followup(purpose: str, token: str, *, answering: bool) -> FollowUp:
    session = get_recovery().session
    unsubscribing = purpose == "unsubscribe"  # used up once she is unsubscribed
    return feedback.followup_for_link(
        session, read_token(purpose, token), answering=answering, unsubscribing=unsubscribing
    )


def create_answers_blueprint() -> Blueprint:
    """The ``recovery_answers`` blueprint: the client's answer and unsubscribe pages."""
    bp = Blueprint("recovery_answers", __name__)
    commit_after_request(bp)  # one commit per answer (flask_recovery.unit)

    @bp.errorhandler(InvalidLink)
    def _invalid_link(error: InvalidLink):
        followup = None
        token = (request.view_args or {}).get("token")
        if error.status == 409 and token:  # a genuine link: answer in her language
            purpose = "unsubscribe" if request.endpoint and "unsubscribe" in request.endpoint else "answer"
            try:
                followup = get_recovery().session.get(FollowUp, read_token(purpose, token))
            except InvalidLink:
                followup = None
        return _link_problem(error, followup)

    @bp.errorhandler(TooManyRequests)
    def _too_many(error: TooManyRequests):
        """Flask-Limiter's refusal (``RECOVERY_RATE_LIMIT``): a friendly page, not a bare 429."""
        response = error.get_response()
        page, status = _render("recovery/rate_limited.html", 429)
        response.set_data(page)
        response.status_code = status
        response.mimetype = "text/html"
        return response

    @bp.after_request
    def _private(response):
        # The URL is a credential: keep it out of caches, search engines and Referer headers.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        return response

    @bp.get("/followups/<token>/answer/<any(good, not_right):choice>")
    def answer_page(token: str, choice: str):
        """The page a mail's answer button opens: confirm with one press. Changes nothing."""
        followup = _followup("answer", token, answering=True)
        form = AnswerForm(formdata=None, data={"choice": choice})
        return _render("recovery/answer.html", followup=followup, form=form, token=token, choice=choice)

    @bp.post("/followups/<token>/answer")
    def answer(token: str):
        """Record the answer once: ``good`` closes the case, ``not_right`` reopens it."""
        followup = _followup("answer", token, answering=True)
        form = AnswerForm()
        choice = form.choice.data if form.choice.data in feedback.ANSWERS else None
        if not form.validate():
            if choice is None:
                raise InvalidLink(_("This link is not valid."))
            _expired(form)
            return _render("recovery/answer.html", 400, followup=followup, form=form, token=token, choice=choice)
        try:
            feedback.record_answer(get_recovery().session, followup.id, choice, form.comment.data)
        except InvalidInput as error:
            if error.field == "comment":
                if "\x00" in (form.comment.data or ""):
                    form.comment.errors = [_("Please remove the invisible control characters from your text.")]
                else:
                    limit = current_app.config["RECOVERY_MAX_TEXT_LENGTH"]
                    form.comment.errors = [_("Please keep it under %(limit)s characters.", limit=limit)]
                return _render("recovery/answer.html", 422, followup=followup, form=form, token=token, choice=choice)
            raise InvalidLink(_("This link is not valid.")) from None
        return _render("recovery/answer_done.html", followup=followup, choice=choice)

    @bp.get("/followups/<token>/unsubscribe")
    def unsubscribe_page(token: str):
        """The unsubscribe page: one button. Changes nothing by itself."""
        followup = _followup("unsubscribe", token, answering=False)
        return _render("recovery/unsubscribe.html", followup=followup, form=UnsubscribeForm(), token=token, done=False)

    @bp.post("/followups/<token>/unsubscribe")
    def unsubscribe_confirm(token: str):
        """Unsubscribe: RFC 8058 one-click from a mail client, or the page's button."""
        followup = _followup("unsubscribe", token, answering=False)
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        form = UnsubscribeForm()
        if not one_click and not form.validate():
            _expired(form)
            return _render("recovery/unsubscribe.html", 400, followup=followup, form=form, token=token, done=False)
        feedback.unsubscribe(get_recovery().session, followup.id)
        return _render("recovery/unsubscribe.html", followup=followup, form=form, token=token, done=True)

    return bp


def init_answers(app: Flask, prefix: str) -> None:
    """Mount the client pages at ``prefix`` and keep one-click unsubscribe free of CSRF tokens.

    A host's ``CSRFProtect`` found now is told at once; one set up after ``init_app`` is
    told before its own check runs (our ``before_request`` hook is registered first).
    """
    app.register_blueprint(create_answers_blueprint(), url_prefix=prefix or None)
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(ONE_CLICK_VIEW)
        return

    @app.before_request
    def _exempt_one_click_from_csrf() -> None:
        late_csrf = current_app.extensions.get("csrf")
        if late_csrf is not None and request.endpoint == "recovery_answers.unsubscribe_confirm":
            late_csrf.exempt(ONE_CLICK_VIEW)
