"""The widget on a host's own page, as a host uses it: every form comes back to that page.

The host here is a small desk app with its own checkout page (``{{ recovery_widget(b.id) }}``
inside its layout, which prints the host's own ``get_flashed_messages()``), its own login
page, and a staff member who reads Russian.
"""

from __future__ import annotations

import logging
import random
import re
import string
from datetime import timedelta
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import flash, render_template_string
from flask_babel import force_locale

from flask_recovery import Staff, widgets
from flask_recovery.forms import STATE_KEY
from flask_recovery.i18n import gettext
from flask_recovery.models import Compensation, Incident

CHECKOUT = "/desk/checkout/b1?day=2026-11-22"
HOST_PAGE = """<!doctype html><html><body>
<header>Velvet desk</header>
{% for message in get_flashed_messages() %}<p class="host-flash">{{ message }}</p>{% endfor %}
<main><h1>Checkout {{ b.id }}</h1>{{ recovery_widget(b.id) }}</main>
</body></html>"""
IRINA_RU = Staff(id="s-admin", name="Irina", role="admin", email="irina@salon.test", locale="ru")
RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9"}
NEXT_VISIT = "/desk/checkout/b5"


def upcoming(host):
    """Anna's next visit, tomorrow."""
    tomorrow = host.bookings["b1"].starts_at + timedelta(days=1)
    return host.add_booking("b5", starts_at=tomorrow, ends_at=tomorrow + timedelta(hours=1), status="booked")


@pytest.fixture
def desk(app, host, booking):
    """The host's checkout page and login page on the test app; Irina (Russian) logged in."""

    def checkout(booking_id):
        if request_flash := app.config.get("HOST_FLASH"):
            flash(request_flash)
        return render_template_string(HOST_PAGE, b=host.bookings[booking_id])

    def login():
        return "the host's login page"

    app.add_url_rule("/desk/checkout/<booking_id>", "checkout", checkout)
    app.add_url_rule("/login", "host_login", login)
    host.staff = IRINA_RU
    return app


@pytest.fixture
def rows(desk):
    """``rows(lambda session: ...)``: a query in a fresh app context, closed again at once (an
    app context kept pushed around the requests would be reused by each of them, with the
    locale the first one cached)."""

    def fetch(query):
        with desk.app_context():
            return query(desk.db.session)

    return fetch


def ru(app, message: str, **values) -> str:
    """The extension's Russian text for ``message``, as the page escapes it."""
    from markupsafe import escape

    with app.app_context(), force_locale("ru"):
        return str(escape(gettext(message, **values)))


def form_html(page: str, action: str) -> str:
    """The HTML of the form that posts to ``action``."""
    match = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert match, f"no form posting to {action}"
    return match.group(1)


class _Fields(HTMLParser):
    """What a browser sends for a form as drawn: inputs, checked radios, selected options, textareas."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            if a.get("type") in ("radio", "checkbox") and "checked" not in a:
                return
            self.values[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and ("selected" in a or self._select not in self.values):
            self.values[self._select] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = a.get("name")
            self.values[self._textarea] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data


def fields_of(form: str) -> dict[str, str]:
    """What a browser would send for ``form`` as it is drawn."""
    parser = _Fields()
    parser.feed(form)
    return parser.values


def record_by_api(client, category="result", severity="major", booking_id="b1") -> int:
    body = {"category": category, "severity": severity, "description": "Colour came out orange"}
    response = client.post(f"/recovery/api/bookings/{booking_id}/incidents", json=body)
    assert response.status_code == 201, response.text
    return response.get_json()["id"]


# -- a mistake and a success come back to the host page ------------------------------------


def test_a_mistake_returns_to_the_host_page_in_her_language_with_her_text_and_every_error(desk, rows):
    client = desk.test_client()
    page = client.get(CHECKOUT, headers=RUSSIAN).text
    form = form_html(page, "/recovery/bookings/b1/incidents")
    assert fields_of(form)["next"] == CHECKOUT

    response = client.post(
        "/recovery/bookings/b1/incidents",
        data={
            **fields_of(form),
            "category": "",
            "severity": "major",
            "description": "   ",
            "corrective_action": "Тест на пряди перед каждым окрашиванием",
        },
        headers=RUSSIAN,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == CHECKOUT + "#recovery-record-b1"
    assert rows(lambda db: db.query(Incident).count()) == 0

    back = client.get(CHECKOUT, headers=RUSSIAN)
    assert back.status_code == 200
    html = back.text
    assert "<h1>Checkout b1</h1>" in html  # the host's page, not the extension's
    # every mistake at once, each next to its field and named by it, in Russian
    category, description = ru(desk, "Choose what went wrong."), ru(desk, "Describe what happened.")
    assert category != "Choose what went wrong." and description != "Describe what happened."
    assert f'<p class="recovery-error" id="recovery-b1-category-error">{category}</p>' in html
    assert f'<p class="recovery-error" id="recovery-b1-description-error">{description}</p>' in html
    assert re.search(r'aria-describedby="recovery-b1-category-error" aria-invalid="true"', html)
    assert re.search(r'aria-describedby="recovery-b1-description-error" aria-invalid="true"', html)
    # the summary at the top of the form the redirect lands on, as a status message
    summary = re.search(
        r'<form[^>]*id="recovery-record-b1"[^>]*>\s*<div class="([^"]*)" role="status" tabindex="-1"', html
    )
    assert summary and "recovery-flash-error" in summary.group(1)
    assert ru(desk, "The incident is not recorded yet: correct the marked fields.") in html
    # what she typed is still there, and the severity she chose
    assert "Тест на пряди перед каждым окрашиванием</textarea>" in html
    assert re.search(r'checked id="recovery-b1-severity-1" name="severity" type="radio" value="major"', html)
    # shown once: a reload shows the plain form again
    again = client.get(CHECKOUT, headers=RUSSIAN).text
    assert category not in again and "Тест на пряди" not in again


def test_a_rule_refusal_after_the_form_checks_returns_too(desk, rows):
    """A second redo on the visit: the form cannot know it, the rule refuses; back on the host
    page with the rule's words in her language, nothing granted twice."""
    client = desk.test_client()
    incident_id = record_by_api(client)
    first = client.post(f"/recovery/api/incidents/{incident_id}/compensations", json={"kind": "redo"})
    assert first.status_code == 201, first.text
    page = client.get(CHECKOUT, headers=RUSSIAN).text
    form = form_html(page, f"/recovery/incidents/{incident_id}/compensations")
    response = client.post(
        f"/recovery/incidents/{incident_id}/compensations",
        data={**fields_of(form), "kind": "redo", "amount": "", "percent": ""},
        headers=RUSSIAN,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{CHECKOUT}#recovery-grant-{incident_id}"
    html = client.get(CHECKOUT, headers=RUSSIAN).text
    message = "This visit already has a free redo, given or waiting for a manager: a visit gets one redo."
    assert ru(desk, message) in html
    assert rows(lambda db: db.query(Compensation).count()) == 1


def test_every_mistake_of_the_remedy_form_at_once(desk, host, rows):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    incident_id = record_by_api(client)
    form = form_html(client.get(CHECKOUT).text, f"/recovery/incidents/{incident_id}/compensations")
    sent = {**fields_of(form), "kind": "gift", "amount": "-5", "percent": "ten", "note": "x" * 5000}
    response = client.post(f"/recovery/incidents/{incident_id}/compensations", data=sent)
    assert response.headers["Location"] == f"{CHECKOUT}#recovery-grant-{incident_id}"
    html = client.get(CHECKOUT).text
    errors = dict(re.findall(rf'<p class="recovery-error" id="recovery-c{incident_id}-(\w+)-error">([^<]*)</p>', html))
    assert errors == {
        "amount": "Enter an amount greater than zero.",
        "percent": "percent must be a whole number between 1 and 100.",
        "note": "This text is too long: 5000 characters, at most 4000.",
    }
    assert rows(lambda db: db.query(Compensation).count()) == 0


def test_grant_returns_to_the_host_page_with_its_confirmation_in_view(desk, rows):
    client = desk.test_client()
    incident_id = record_by_api(client)
    page = client.get(CHECKOUT, headers=RUSSIAN).text
    form = form_html(page, f"/recovery/incidents/{incident_id}/compensations")
    assert form.count('name="next"') == 1, "one next field, the host page"
    sent = {**fields_of(form), "kind": "discount", "amount": "500"}
    assert sent["next"] == CHECKOUT

    response = client.post(f"/recovery/incidents/{incident_id}/compensations", data=sent, headers=RUSSIAN)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{CHECKOUT}#incident-{incident_id}"
    status, amount, voucher = rows(
        lambda db: db.query(Compensation.status, Compensation.amount, Compensation.voucher_code).one()
    )
    assert status == "granted" and amount == 50000

    html = client.get(CHECKOUT, headers=RUSSIAN).text
    # the confirmation opens the incident the redirect lands on (in view on a phone)
    opening = re.search(
        rf'<li class="recovery-incident[^"]*" id="incident-{incident_id}">\s*<div class="recovery-flash" role="status" '
        rf'tabindex="-1" id="incident-{incident_id}-message">(.*?)</div>',
        html,
        re.S,
    )
    assert opening, "the confirmation is not at the top of the incident"
    assert ru(desk, "Compensation granted.") in opening.group(1)
    assert voucher in opening.group(1)


def test_grant_in_english_shows_the_english_confirmation(desk, host, rows):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    incident_id = record_by_api(client)
    form = form_html(client.get(CHECKOUT).text, f"/recovery/incidents/{incident_id}/compensations")
    client.post(
        f"/recovery/incidents/{incident_id}/compensations", data={**fields_of(form), "kind": "discount", "amount": "5"}
    )
    html = client.get(CHECKOUT).text
    assert html.count("Compensation granted.") == 1


def test_resolve_and_a_second_resolve_come_back_with_their_messages(desk, host, rows):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    incident_id = record_by_api(client)
    form = form_html(client.get(CHECKOUT).text, f"/recovery/incidents/{incident_id}/resolve")
    sent = {**fields_of(form), "note": "Redo on Friday"}
    first = client.post(f"/recovery/incidents/{incident_id}/resolve", data=sent)
    assert first.status_code == 303 and first.headers["Location"] == f"{CHECKOUT}#incident-{incident_id}"
    assert "Case marked resolved." in client.get(CHECKOUT).text
    # a second desk presses the same button a moment later: back to the page, told why
    second = client.post(f"/recovery/incidents/{incident_id}/resolve", data=sent)
    assert second.status_code == 303 and second.headers["Location"] == f"{CHECKOUT}#incident-{incident_id}"
    html = client.get(CHECKOUT).text
    assert "Someone has just changed this case: it is now Resolved." in html
    assert rows(lambda db: db.query(Incident.status).scalar()) == "resolved"


def test_the_extensions_messages_never_reach_the_hosts_flash(desk, host):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    form = form_html(client.get(CHECKOUT).text, "/recovery/bookings/b1/incidents")
    data = {**fields_of(form), "category": "late", "severity": "minor", "description": "Started 20 min late"}
    assert client.post("/recovery/bookings/b1/incidents", data=data).status_code == 303
    with client.session_transaction() as stored:
        assert "_flashes" not in stored  # nothing went through flask.flash
    desk.config["HOST_FLASH"] = "Checkout saved"  # the host's own message on the same page
    html = client.get(CHECKOUT).text
    assert html.count("Incident recorded. Say the first words of the script now.") == 1
    assert re.findall(r'<p class="host-flash">([^<]*)</p>', html) == ["Checkout saved"]
    widget = html[html.index('<section class="recovery-widget"') :]
    assert "Checkout saved" not in widget


def test_the_booking_page_shows_the_same_in_widget_messages(desk, host):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    page = client.get("/recovery/bookings/b1").text
    form = form_html(page, "/recovery/bookings/b1/incidents")
    assert fields_of(form)["next"] == "/recovery/bookings/b1"
    response = client.post(
        "/recovery/bookings/b1/incidents", data={**fields_of(form), "category": "", "description": ""}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/recovery/bookings/b1#recovery-record-b1"
    html = client.get("/recovery/bookings/b1").text
    assert "Choose what went wrong." in html and "Describe what happened." in html


def test_a_text_too_big_for_the_session_cookie_is_kept_on_the_booking_page(desk, host, rows):
    """What she typed is never lost: when it cannot ride in the cookie, the booking page shows it (422)."""
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    text = "".join(random.Random(7).choices(string.ascii_letters, k=3900))  # does not compress
    response = client.post(
        "/recovery/bookings/b1/incidents",
        data={"category": "", "severity": "major", "description": text, "next": CHECKOUT},
    )
    assert response.status_code == 422
    assert text in response.text and "Choose what went wrong." in response.text
    with client.session_transaction() as stored:
        assert STATE_KEY not in stored
    assert rows(lambda db: db.query(Incident).count()) == 0


@pytest.mark.config(WTF_CSRF_ENABLED=True)
def test_an_expired_form_from_this_site_comes_back_with_her_text_a_forged_one_does_not(desk, host, rows):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    client = desk.test_client()
    form = form_html(client.get(CHECKOUT).text, "/recovery/bookings/b1/incidents")
    data = {**fields_of(form), "csrf_token": "expired", "category": "late", "description": "Started 20 min late"}
    expired = client.post("/recovery/bookings/b1/incidents", data=data, headers={"Origin": "http://localhost"})
    assert expired.status_code == 303 and expired.headers["Location"] == CHECKOUT + "#recovery-record-b1"
    html = client.get(CHECKOUT).text
    assert "The form had expired, so nothing was saved." in html and "Started 20 min late</textarea>" in html

    forged = client.post("/recovery/bookings/b1/incidents", data=data, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 400 and "Started 20 min late" not in forged.text
    assert "Started 20 min late" not in client.get(CHECKOUT).text
    assert rows(lambda db: db.query(Incident).count()) == 0


def test_the_widgets_flag_forms_come_back_to_the_host_page(desk, host, rows):
    host.staff = Staff(id="s-manager", name="Marina", role="manager", locale="en")
    client = desk.test_client()
    record_by_api(client)  # on today's visit: her next one carries a flag
    upcoming(host)
    page = client.get(NEXT_VISIT).text
    flag_id = re.search(r'action="/recovery/flags/(\d+)/lift"', page).group(1)
    form = form_html(page, f"/recovery/flags/{flag_id}/lift")
    assert fields_of(form)["next"] == NEXT_VISIT and fields_of(form)["booking_id"] == "b5"
    response = client.post(f"/recovery/flags/{flag_id}/lift", data={**fields_of(form), "reason": " "})
    assert response.status_code == 303 and response.headers["Location"] == f"{NEXT_VISIT}#flag-{flag_id}"
    html = client.get(NEXT_VISIT).text
    assert (
        f'<p class="recovery-error" id="lift-reason-{flag_id}-error">Give a reason: a colleague will read it.</p>'
        in html
    )
    assert '<details class="recovery-lift" open>' in html
    response = client.post(f"/recovery/flags/{flag_id}/lift", data={**fields_of(form), "reason": "Asked us not to"})
    assert response.status_code == 303 and response.headers["Location"] == f"{NEXT_VISIT}#recovery-widget"
    assert "Flag lifted." in client.get(NEXT_VISIT).text


# -- login ------------------------------------------------------------------------------------


@pytest.mark.config(RECOVERY_LOGIN_VIEW="host_login")
def test_no_staff_member_is_sent_to_the_hosts_login_with_next(desk, host):
    host.staff = None
    client = desk.test_client()
    page = client.get("/recovery/bookings/b1?category=late")
    assert page.status_code == 302
    location = urlsplit(page.headers["Location"])
    assert location.path == "/login" and not location.netloc
    assert parse_qs(location.query) == {"next": ["/recovery/bookings/b1?category=late"]}
    assert client.get("/recovery/journal").headers["Location"] == "/login?next=%2Frecovery%2Fjournal"
    # a form sent after the session ended: to the login, then back to the page it came from
    post = client.post("/recovery/bookings/b1/incidents", data={"category": "late", "next": CHECKOUT})
    assert post.status_code == 303
    assert parse_qs(urlsplit(post.headers["Location"]).query) == {"next": [CHECKOUT]}
    # never somewhere else: an outside next is dropped
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        post = client.post("/recovery/bookings/b1/incidents", data={"category": "late", "next": evil})
        assert post.status_code == 303 and post.headers["Location"] == "/login", evil
    # the JSON API still answers 401 JSON
    api = client.get("/recovery/api/bookings/b1")
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "not_authenticated"


@pytest.mark.config(RECOVERY_LOGIN_VIEW="/accounts/login?source=desk")
def test_a_login_url_keeps_its_own_query(desk, host):
    host.staff = None
    response = desk.test_client().get("/recovery/approvals")
    location = urlsplit(response.headers["Location"])
    assert location.path == "/accounts/login"
    assert parse_qs(location.query) == {"source": ["desk"], "next": ["/recovery/approvals"]}


def test_flask_logins_login_view_is_the_default(desk, host):
    """Flask-Login's LoginManager.init_app sets ``app.login_manager``; its ``login_view`` is used."""
    desk.login_manager = SimpleNamespace(login_view="host_login", blueprint_login_views={})
    host.staff = None
    response = desk.test_client().get("/recovery/bookings/b1")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Frecovery%2Fbookings%2Fb1"
    desk.login_manager.blueprint_login_views = {"recovery": "/staff/login"}
    assert desk.test_client().get("/recovery/budget").headers["Location"] == "/staff/login?next=%2Frecovery%2Fbudget"


def test_without_a_login_view_the_401_page_says_so_in_her_language(desk, host):
    host.staff = None
    response = desk.test_client().get("/recovery/bookings/b1", headers=RUSSIAN)
    assert response.status_code == 401
    sentence = ru(
        desk, "This page is for the salon's staff. Log in on the salon's site first, then open this page again."
    )
    assert sentence.startswith("Эта страница") and sentence in response.text


@pytest.mark.config(RECOVERY_LOGIN_VIEW="no_such_endpoint")
def test_a_login_view_that_is_not_an_endpoint_is_logged_and_the_401_page_stays(desk, host, caplog):
    host.staff = None
    with caplog.at_level(logging.ERROR):
        response = desk.test_client().get("/recovery/bookings/b1")
    assert response.status_code == 401
    assert any("no_such_endpoint" in record.getMessage() for record in caplog.records)


# -- the widget and the badge never break the host's page ---------------------------------------


@pytest.mark.parametrize(
    ("loader", "cause"),
    [
        (lambda booking_id: 1 / 0, "ZeroDivisionError"),
        (lambda booking_id: {"id": booking_id}, "TypeError"),
    ],
    ids=["raises", "not-a-booking"],
)
def test_a_broken_loader_draws_a_small_error_and_logs_the_cause(desk, loader, cause, caplog):
    desk.recovery.booking_loader(loader)
    with caplog.at_level(logging.ERROR):
        response = desk.test_client().get(CHECKOUT, headers=RUSSIAN)
    assert response.status_code == 200
    html = response.text
    assert "<h1>Checkout b1</h1>" in html
    message = ru(
        desk,
        "The service-recovery panel could not load this booking. The cause is in the site's log; "
        "the rest of the page works as usual.",
    )
    assert message.startswith("Панель") and message in html
    assert 'class="recovery-widget recovery-widget--error" role="status"' in html
    logged = [r for r in caplog.records if "recovery_widget('b1')" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and logged[0].exc_info[0].__name__ == cause


def test_an_unknown_booking_still_says_so_without_logging_an_error(desk, host, caplog):
    host.staff = Staff(id="s-admin", name="Irina", role="admin", locale="en")
    with desk.test_request_context(CHECKOUT), caplog.at_level(logging.WARNING):
        html = render_template_string("{{ recovery_widget('nope') }}")
    assert "No such booking." in html
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class RowWithoutClient:
    """A host row the badge cannot use: no ``client_id``."""

    def __init__(self, id):  # noqa: A002
        self.id = id


class RowWithoutEnd:
    """A host row with a client but no ``ends_at``."""

    def __init__(self, id, client_id):  # noqa: A002
        self.id, self.client_id = id, client_id


def test_a_badge_for_a_row_it_cannot_use_logs_why_once(desk, host, caplog, monkeypatch):
    monkeypatch.setattr(widgets, "_LOGGED", set())  # "once per process": start this test afresh
    record_by_api(desk.test_client())  # client c1 has a flag: every row of hers would get a badge
    template = "{% for row in rows %}[{{ recovery_badge(row) }}]{% endfor %}"
    rows = [RowWithoutClient("b1"), RowWithoutClient("b2"), RowWithoutEnd("b1", "c1"), RowWithoutEnd("b3", "c1")]
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # two requests: still one warning per reason
            with desk.test_request_context("/desk/day"):
                assert render_template_string(template, rows=rows) == "[][][][]"
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "recovery_badge" in r.getMessage()
    ]
    assert len(warnings) == 2, warnings
    assert "RowWithoutClient" in warnings[0] and "'client_id' is missing" in warnings[0]
    assert "RowWithoutEnd" in warnings[1] and "'ends_at' is missing" in warnings[1]
    # the same rows through recovery_badges: nothing, no error, no new warning
    caplog.clear()
    with desk.test_request_context("/desk/day"), caplog.at_level(logging.WARNING):
        badges = render_template_string("{% set b = recovery_badges(rows) %}{{ b|length }}", rows=rows)
    assert badges == "0" and not caplog.records
