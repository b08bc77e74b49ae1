"""The language order: staff read the extension in ``Staff.locale``, then the host's own
Flask-Babel selector, then the request (``?lang=``, ``Accept-Language``), then
``RECOVERY_DEFAULT_LOCALE``; the widget on a host's page speaks the staff member's language
without changing the language of the host's page around it."""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask, render_template_string
from flask_babel import Babel, get_locale
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import Recovery, i18n, widgets

RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9"}
ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}
TITLE = {"en": "Service recovery", "ru": "Работа с жалобами"}
NO_BOOKING = {"en": "No such booking.", "ru": "Такой записи нет."}


def staff(host, who="admin", locale=None):
    """A demo staff member with ``locale``, logged in."""
    member = replace(host.STAFF[who], locale=locale) if locale else host.STAFF[who]
    host.staff = member
    return member


def locale_in(app, **request):
    with app.test_request_context("/", **request):
        return i18n.staff_locale(app.recovery.current_staff())


@pytest.fixture
def babel_host(db_url, host):
    """A host with its own Flask-Babel (set up before the extension), whose selector answers
    ``babel_host.choice`` (``None``: no answer) or raises when it is an exception."""

    class Choice:
        value: object = "en"
        calls = 0

    def selector():
        Choice.calls += 1
        if isinstance(Choice.value, Exception):
            raise Choice.value
        return Choice.value

    app = Flask("babel_host")
    app.config.update(
        TESTING=True, SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=db_url, WTF_CSRF_ENABLED=False, MAIL_SUPPRESS_SEND=True
    )
    Babel(app, locale_selector=selector)
    db = SQLAlchemy(app)
    recovery = Recovery(app, db=db)
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: host.staff)
    app.recovery, app.db, app.choice = recovery, db, Choice
    with app.app_context():
        recovery.drop_all()
        recovery.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        recovery.drop_all()
        db.engine.dispose()


def wire(app):
    """The staff blueprints speak the staff member's language, and so does the widget.

    What ``create_blueprint`` / ``create_api_blueprint`` (``i18n.init_staff_locale(bp)``)
    and ``render_widget`` (``with i18n.staff_language(staff)``) do; done here only while
    they do not, so these tests check the real wiring as soon as it is in.
    """
    for name in ("recovery", "recovery_api"):
        if i18n.apply_staff_locale not in app.before_request_funcs.get(name, []):
            app.before_request_funcs.setdefault(name, []).append(i18n.apply_staff_locale)
            app.teardown_request_funcs.setdefault(name, []).append(i18n.restore_locale)
    if "staff_language" not in inspect.getsource(widgets.render_widget):

        def recovery_widget(booking_id):
            with i18n.staff_language(app.recovery.current_staff()):
                return widgets.render_widget(booking_id)

        app.add_template_global(recovery_widget, "recovery_widget")
    return app


# -- the order -----------------------------------------------------------------------


def test_the_staff_members_locale_comes_first(app, host):
    staff(host, locale="ru")
    assert locale_in(app, headers=ENGLISH) == "ru"
    assert locale_in(app, query_string={"lang": "en"}) == "ru"
    staff(host, locale="ru_RU")
    assert locale_in(app, headers=ENGLISH) == "ru"  # a regional variant finds its language
    staff(host, locale="de")
    assert locale_in(app, headers=RUSSIAN) == "ru"  # a language the extension lacks: next in order


def test_without_a_staff_locale_the_request_decides_then_the_default(app, host):
    staff(host)
    assert locale_in(app, headers=RUSSIAN) == "ru"
    assert locale_in(app, headers=RUSSIAN, query_string={"lang": "en"}) == "en"
    assert locale_in(app) == "en"
    app.config["RECOVERY_DEFAULT_LOCALE"] = "ru"
    assert locale_in(app, headers={"Accept-Language": "de, fr;q=0.5"}) == "ru"
    host.staff = None  # nobody logged in: the same order without the first step
    assert locale_in(app, headers=ENGLISH) == "en"


def test_outside_a_request_the_staff_locale_then_the_default(app, host):
    with app.app_context():
        assert i18n.staff_locale(replace(host.STAFF["admin"], locale="ru")) == "ru"
        assert i18n.staff_locale(None) == "en"


def test_the_extensions_own_selector_is_not_taken_for_the_hosts(app, host):
    # the host has no Babel: the extension set one up, whose selector follows the request
    staff(host)
    with app.test_request_context("/", headers=RUSSIAN):
        assert i18n.host_locale() is None
        assert i18n.staff_locale(None) == "ru"


def test_the_hosts_selector_comes_after_the_staff_locale_and_before_the_request(babel_host, host):
    staff(host)
    babel_host.choice.value = "ru"
    assert locale_in(babel_host, headers=ENGLISH) == "ru"
    staff(host, locale="en")
    assert locale_in(babel_host, headers=RUSSIAN) == "en"
    staff(host)
    babel_host.choice.value = None  # the host's selector has no answer: the request
    assert locale_in(babel_host, headers=RUSSIAN) == "ru"
    babel_host.choice.value = "fr"  # one the extension does not speak: the request
    assert locale_in(babel_host, headers=RUSSIAN) == "ru"


def test_a_failing_host_selector_is_logged_and_the_request_decides(babel_host, host, caplog):
    staff(host)
    babel_host.choice.value = LookupError("no user yet")
    with caplog.at_level(logging.ERROR, logger="flask_recovery"):
        assert locale_in(babel_host, headers=RUSSIAN) == "ru"
    assert "locale selector failed" in caplog.text


# -- applying it ---------------------------------------------------------------------


def test_staff_language_translates_inside_and_gives_the_locale_back(babel_host, host):
    babel_host.choice.value = "en"
    member = staff(host, locale="ru")
    with babel_host.test_request_context("/", headers=ENGLISH):
        assert i18n.gettext("No such booking.") == NO_BOOKING["en"]
        with i18n.staff_language(member) as locale:
            assert locale == "ru"
            assert i18n.gettext("No such booking.") == NO_BOOKING["ru"]
            assert str(get_locale()) == "ru"
        assert str(get_locale()) == "en"
        assert i18n.gettext("No such booking.") == NO_BOOKING["en"]


def test_the_request_hook_sets_the_staff_locale_until_teardown(app, host):
    staff(host, locale="ru")
    with app.test_request_context("/", headers=ENGLISH):
        assert str(get_locale()) == "en"
        i18n.apply_staff_locale()
        assert str(get_locale()) == "ru" and i18n.gettext("No such booking.") == NO_BOOKING["ru"]
        i18n.apply_staff_locale()  # twice in one request: still one locale to give back
        i18n.restore_locale()
        assert str(get_locale()) == "en"
        i18n.restore_locale()  # nothing left to restore: harmless
        assert str(get_locale()) == "en"


def test_init_staff_locale_on_a_blueprint(app, host):
    from flask import Blueprint

    bp = i18n.init_staff_locale(Blueprint("staff_bit", __name__))
    bp.add_url_rule("/staff-bit", "bit", lambda: f"{i18n.gettext('No such booking.')}|{get_locale()}")
    app.add_url_rule("/host-bit", "host_bit", lambda: f"{i18n.gettext('No such booking.')}|{get_locale()}")
    app.register_blueprint(bp)
    staff(host, locale="ru")
    client = app.test_client()
    assert client.get("/staff-bit", headers=ENGLISH).text == f"{NO_BOOKING['ru']}|ru"
    assert client.get("/host-bit", headers=ENGLISH).text == f"{NO_BOOKING['en']}|en"  # the host's own route


# -- what staff see ------------------------------------------------------------------


def test_the_booking_page_follows_the_staff_locale_not_the_browser(app, host, booking):
    wire(app)
    staff(host, locale="en")
    page = app.test_client().get(f"/recovery/bookings/{booking.id}", headers=RUSSIAN)
    assert page.status_code == 200
    assert '<html lang="en"' in page.text and TITLE["en"] in page.text and TITLE["ru"] not in page.text
    staff(host, locale="ru")
    page = app.test_client().get(f"/recovery/bookings/{booking.id}", headers=ENGLISH)
    assert '<html lang="ru"' in page.text and TITLE["ru"] in page.text


def test_a_staff_member_without_a_locale_gets_the_browsers_language(app, host, booking):
    wire(app)
    staff(host)
    page = app.test_client().get(f"/recovery/bookings/{booking.id}", headers=RUSSIAN)
    assert TITLE["ru"] in page.text


def test_api_errors_follow_the_staff_locale(app, host):
    wire(app)
    staff(host, locale="ru")
    answer = app.test_client().get("/recovery/api/bookings/nope", headers=ENGLISH)
    assert answer.status_code == 404
    assert answer.json["error"]["message"] == NO_BOOKING["ru"]


def test_the_widget_speaks_the_staff_locale_and_the_host_page_keeps_its_own(babel_host, host, booking):
    """An English host page, a Russian browser: an English staff member's widget is English;
    a Russian staff member's widget is Russian, and the host's page after it is English again."""
    wire(babel_host)
    babel_host.choice.value = "en"  # the host's page is English
    page = "{{ recovery_widget(booking_id) }}<p id=after>{{ _r('No such booking.') }}|{{ recovery_locale() }}</p>"

    staff(host, locale="en")
    with babel_host.test_request_context("/checkout", headers=RUSSIAN):
        html = render_template_string(page, booking_id=booking.id)
    assert TITLE["en"] in html and TITLE["ru"] not in html

    staff(host, locale="ru")
    with babel_host.test_request_context("/checkout", headers=ENGLISH):
        html = render_template_string(page, booking_id=booking.id)
        assert str(get_locale()) == "en"  # nothing of the widget's language stays behind
    widget, after = html.split("<p id=after>")
    assert TITLE["ru"] in widget and 'lang="ru"' not in after
    assert after.startswith(f"{NO_BOOKING['en']}|en")


# -- gender-neutral staff texts ----------------------------------------------------------

SHE = re.compile(r"\b(she|her|hers|herself)\b", re.I)
#: Russian forms that guess the reader's or the client's gender: "Отметил(а)", "клиентка".
GUESSED = re.compile(r"\((а|ла|ась|ая)\)|клиентк", re.I)
PACKAGE = Path(__file__).resolve().parents[1] / "flask_recovery"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "_r": None,
    "ngettext_r": (1, 2),
    "_l": None,
    "lazy_gettext": None,
}


def extracted_texts(*only: str) -> dict[str, list[str]]:
    """Every message the extension's code and templates translate, with where it is used
    (``only``: these files, relative to the package)."""
    from babel.messages.extract import extract_from_dir

    method_map = [("**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
    found: dict[str, list[str]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map, {}, KEYWORDS, strip_comment_tags=True
    ):
        if only and filename not in only:
            continue
        for text in message if isinstance(message, tuple) else (message,):
            if text:
                found.setdefault(text, []).append(filename)
    return found


@pytest.mark.parametrize("locale", ["en", "ru"])
def test_the_3r_scripts_do_not_assume_the_client_is_a_woman(app, locale):
    from flask_recovery.vocabulary import SCRIPTS, script_for

    with app.test_request_context("/"), i18n.language(locale):
        lines = [line for category in SCRIPTS for line in script_for(category).values()]
    assert len(lines) == 3 * len(SCRIPTS)
    assert [line for line in lines if SHE.search(line) or GUESSED.search(line)] == []


def test_the_managers_mail_does_not_assume_the_client_is_a_woman():
    texts = extracted_texts(
        "templates/recovery/email/unhappy_answer.txt", "templates/recovery/email/unhappy_answer.html"
    )
    assert "The client's comment:" in texts
    assert [text for text in texts if SHE.search(text)] == []


def test_no_russian_staff_text_guesses_a_gender():
    """Every Russian line the extension uses reads the same for a man and a woman."""
    from babel.messages.pofile import read_po

    with (PACKAGE / "translations" / "ru" / "LC_MESSAGES" / "flask_recovery.po").open("rb") as fh:
        catalogue = read_po(fh)
    used = extracted_texts()
    guessing = []
    for message in catalogue:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if ids[0] in used and any(GUESSED.search(text or "") for text in strings):
            guessing.append(f"{ids[0]!r} -> {strings!r}")
    assert guessing == []


def test_no_staff_text_assumes_the_client_is_a_woman():
    texts = extracted_texts()
    assert len(texts) > 300
    assert {text: places for text, places in texts.items() if SHE.search(text)} == {}
