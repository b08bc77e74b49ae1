"""The checkout widget in a real browser: the example salon app, served over HTTP, driven
by Debian's Chromium through Playwright.

Each test gets its own server (a thread running ``werkzeug.serving.make_server``) on the
test's database (SQLite file or the session's PostgreSQL database), with the demo data
seeded and CSRF protection on, as in production. At teardown the salon's and the
extension's tables are dropped and the engine disposed, so the shared PostgreSQL database
is clean for the other tests. One Chromium serves the whole session; each test gets a
fresh browser context.

Run only these: ``pytest -m browser``; skip them: ``pytest -m "not browser"``.
Chromium comes from ``RECOVERY_TEST_CHROMIUM`` (default ``/usr/bin/chromium``).
The tests leave two screenshots for people to look at: ``widget.png`` and
``widget-mobile.png`` in ``RECOVERY_TEST_SCREENSHOTS`` (default: the temp directory).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask, got_request_exception
from playwright.sync_api import expect
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import browser_pages

SCREENSHOTS = Path(os.environ.get("RECOVERY_TEST_SCREENSHOTS") or tempfile.gettempdir())
TIMEOUT_MS = 5000

PO_FILE = Path(__file__).resolve().parent.parent / "flask_recovery/translations/ru/LC_MESSAGES/flask_recovery.po"

#: The example app's own header labels (its catalogue is not the extension's).
HEADER = {
    "en": {"signed_in_as": "Signed in as", "switch": "Switch"},
    "ru": {"signed_in_as": "Вы вошли как", "switch": "Сменить"},
}

ANNA_BOOKING = "8"  # today, 10:00, Анна Смирнова, Ольга, completed (example_app/README.md)
CHECKOUT = f"/bookings/{ANNA_BOOKING}/checkout"
HOSTILE = "<script>window.__pwned=1</script> Colour came out orange <b>bold</b>"


# -- the translations ---------------------------------------------------------------------


@cache
def _catalogue() -> dict[str, str]:
    from babel.messages.pofile import read_po

    with PO_FILE.open("rb") as handle:
        catalog = read_po(handle, locale="ru")
    return {m.id: m.string for m in catalog if isinstance(m.id, str) and m.id and not m.fuzzy}


def ru(msgid: str) -> str:
    """The extension's Russian text for ``msgid`` (from the shipped catalogue)."""
    text = _catalogue().get(msgid)
    assert text, f"no Russian translation of {msgid!r} in {PO_FILE.name}"
    return text


def en(msgid: str) -> str:
    return msgid


# -- the server ---------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """No access log lines; errors are still logged (and collected, see ``live_server``)."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@dataclass
class LiveServer:
    url: str
    app: Flask
    errors: list[BaseException] = field(default_factory=list)


@pytest.fixture
def live_server(db_url):
    """The example app on a real HTTP server, seeded, CSRF on; tables dropped afterwards."""
    from example_app import create_app, db, recovery
    from example_app.seed import seed

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "TESTING": True,
            "SECRET_KEY": "browser-test",
            "WTF_CSRF_ENABLED": True,  # the default; said out loud because the tests rely on it
            "SALON_AUTO_SEED": False,  # we start from empty tables ourselves, below
            "MAIL_SUPPRESS_SEND": True,
        }
    )
    with app.app_context():
        db.drop_all()
        recovery.drop_all()
        db.create_all()
        recovery.create_all()
        seed()
        db.session.commit()  # the host's commit (the rules only flush)
        db.session.remove()

    live = LiveServer(url="", app=app)

    def _record(sender, exception, **extra):
        live.errors.append(exception)

    got_request_exception.connect(_record, app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    live.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server", daemon=True
    )
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        got_request_exception.disconnect(_record, app)
        with app.app_context():
            db.session.commit()  # the host's commit (the rules only flush)
            db.session.remove()
            db.drop_all()
            recovery.drop_all()
            db.engine.dispose()
    assert not live.errors, f"the app raised while serving the browser: {live.errors!r}"


# -- the browser --------------------------------------------------------------------------


@pytest.fixture
def make_page(browser, live_server):
    """``make_page(**context_options)``: a page in a fresh context on the live server.

    Contexts close before the server stops (this fixture depends on ``live_server``).
    """
    with browser_pages(browser, live_server.url, TIMEOUT_MS) as make:
        yield make


@pytest.fixture
def page(make_page):
    return make_page()


# -- steps --------------------------------------------------------------------------------


def sign_in(page, who: str, lang: str = "en") -> None:
    """Pick ``who`` in the header's "Signed in as" menu and press Switch."""
    labels = HEADER[lang]
    page.get_by_label(labels["signed_in_as"], exact=True).select_option(who)
    page.get_by_role("button", name=labels["switch"], exact=True).click()
    expect(page.locator("p.who")).to_have_attribute("data-staff-key", who)


def open_checkout(page, booking_id: str = ANNA_BOOKING):
    """Open a checkout page directly; returns the widget."""
    page.goto(f"/bookings/{booking_id}/checkout")
    widget = page.locator("section#recovery-widget")
    expect(widget).to_be_visible()
    return widget


def fill_incident(widget, t, *, category: str, severity: str, description: str, action: str) -> None:
    """Fill the widget's form through its labels; ``t`` maps the extension's msgids."""
    widget.get_by_label(t("What went wrong"), exact=True).select_option(label=t(category))
    widget.get_by_role("group", name=t("How serious")).get_by_label(t(severity), exact=True).check()
    widget.get_by_label(t("What happened"), exact=True).fill(description)
    widget.get_by_label(t("What will change (the client is told this)"), exact=True).fill(action)


def record_incident(widget, t, **fields) -> None:
    fill_incident(widget, t, **fields)
    widget.get_by_role("button", name=t("Record incident"), exact=True).click()
    expect(widget.get_by_role("status")).to_contain_text(t("Incident recorded. Say the first words of the script now."))


def path_of(page) -> str:
    return urlsplit(page.url).path


# -- tests --------------------------------------------------------------------------------


@pytest.mark.browser
def test_admin_records_an_incident_and_markup_is_shown_as_text(page):
    page.goto("/")
    sign_in(page, "irina")
    page.goto("/")  # today's day list
    row = page.locator("tr[data-booking-id]", has_text="Анна Смирнова")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-booking-id", ANNA_BOOKING)
    # The link's accessible name carries the client (a visually hidden suffix).
    row.get_by_role("link", name=re.compile(r"^Checkout\s*: Анна Смирнова, 10:00$")).click()
    expect(page).to_have_url(re.compile(rf"{re.escape(CHECKOUT)}$"))

    widget = page.locator("section#recovery-widget")
    expect(widget.get_by_role("heading", name="Service recovery", exact=True)).to_be_visible()
    form = widget.locator("form", has=page.get_by_role("button", name="Record incident", exact=True))
    expect(form.locator("input[name=csrf_token]")).to_have_value(re.compile(r".{20,}"))
    # The widget's own stylesheet and script are served.
    for asset in (widget.locator("link[rel=stylesheet]"), widget.locator("script[src]")):
        url = asset.get_attribute("href") or asset.get_attribute("src")
        response = page.request.get(url)
        assert response.ok, f"{url}: HTTP {response.status}"

    fill_incident(
        widget,
        en,
        category="Result not as agreed",
        severity="Major",
        description=HOSTILE,
        action="Strand test before every colouring",
    )
    widget.get_by_role("button", name="Record incident", exact=True).click()

    status = widget.get_by_role("status")
    expect(status).to_be_visible()
    expect(status).to_contain_text("Incident recorded")
    # The page has one status region: the host's flash area must not add an empty one.
    expect(page.get_by_role("status")).to_have_count(1)
    assert path_of(page) == CHECKOUT

    incidents = widget.locator("ul.recovery-incidents li.recovery-incident")
    expect(incidents).to_have_count(1)
    incident = incidents.first
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Result not as agreed")
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Major")
    expect(incident.locator(".recovery-status")).to_have_text("Open")
    expect(incident).to_contain_text("Strand test before every colouring")
    description = incident.locator("p.recovery-description")
    text = description.inner_text()
    assert "<script>window.__pwned=1</script>" in text
    assert "Colour came out orange <b>bold</b>" in text
    assert page.evaluate("window.__pwned") is None
    expect(description.locator("b")).to_have_count(0)
    expect(description.locator("script")).to_have_count(0)
    expect(widget.get_by_role("button", name="Mark resolved", exact=True)).to_be_visible()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(SCREENSHOTS / "widget.png"), full_page=True)


@pytest.mark.browser
def test_keyboard_only_recording_and_the_script_follows_the_category(page):
    page.goto("/")
    sign_in(page, "irina")
    widget = open_checkout(page)
    late = widget.locator('.recovery-scripts details[data-category="late"]')
    expect(late).not_to_have_attribute("open", "")

    category = widget.get_by_label("What went wrong", exact=True)
    category.focus()
    expect(category).to_be_focused()
    page.keyboard.press("L")  # type-ahead on a closed <select>: "Late start"
    expect(category).to_have_value("late")
    expect(late).to_have_attribute("open", "")
    expect(widget.locator(".recovery-scripts details[open]")).to_have_count(1)

    page.keyboard.press("Tab")  # into the radio group, on the checked "Minor"
    minor = widget.get_by_role("radio", name="Minor", exact=True)
    expect(minor).to_be_focused()
    page.keyboard.press("ArrowRight")
    major = widget.get_by_role("radio", name="Major", exact=True)
    expect(major).to_be_checked()

    page.keyboard.press("Tab")
    expect(widget.get_by_label("What happened", exact=True)).to_be_focused()
    page.keyboard.type("Started 25 minutes late")
    page.keyboard.press("Tab")
    expect(widget.get_by_label("What will change (the client is told this)", exact=True)).to_be_focused()
    page.keyboard.type("A buffer after long colourings")
    page.keyboard.press("Tab")
    button = widget.get_by_role("button", name="Record incident", exact=True)
    expect(button).to_be_focused()
    page.keyboard.press("Enter")

    expect(widget.get_by_role("status")).to_contain_text("Incident recorded")
    assert path_of(page) == CHECKOUT
    incident = widget.locator("li.recovery-incident")
    expect(incident).to_have_count(1)
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Late start")
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Major")
    expect(incident.locator("p.recovery-description")).to_have_text("Started 25 minutes late")


@pytest.mark.browser
def test_without_javascript_the_server_rendered_form_records(make_page):
    page = make_page(java_script_enabled=False)
    page.goto("/")
    sign_in(page, "irina")
    widget = open_checkout(page)
    fill_incident(
        widget,
        en,
        category="Hygiene",
        severity="Critical",
        description="Used towel on the chair",
        action="Fresh towel checked before every client",
    )
    # No script ran: choosing a category did not open its 3R script.
    expect(widget.locator('.recovery-scripts details[data-category="hygiene"]')).not_to_have_attribute("open", "")
    widget.get_by_role("button", name="Record incident", exact=True).click()

    expect(widget.get_by_role("status")).to_contain_text("Incident recorded")
    assert path_of(page) == CHECKOUT
    incident = widget.locator("li.recovery-incident")
    expect(incident).to_have_count(1)
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Hygiene")
    expect(incident.locator(".recovery-incident-head")).to_contain_text("Critical")
    expect(incident.locator("p.recovery-description")).to_have_text("Used towel on the chair")


@pytest.mark.browser
def test_russian_ui_records_and_resolves(page):
    page.goto("/")
    page.get_by_role("button", name="Русский", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    sign_in(page, "irina", lang="ru")
    widget = open_checkout(page)
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    heading = widget.get_by_role("heading", level=2)
    expect(heading).to_have_text("Работа с жалобами")
    assert ru("Service recovery") == "Работа с жалобами"

    record_incident(
        widget,
        ru,
        category="Result not as agreed",
        severity="Major",
        description="Цвет получился рыжим",
        action="Пробная прядь перед каждым окрашиванием",
    )
    incident = widget.locator("li.recovery-incident")
    expect(incident).to_have_count(1)
    expect(incident.locator(".recovery-incident-head")).to_contain_text(ru("Result not as agreed"))
    expect(incident.locator(".recovery-status")).to_have_text(ru("Open"))
    expect(incident.locator("p.recovery-description")).to_have_text("Цвет получился рыжим")

    incident.get_by_role("button", name=ru("Mark resolved"), exact=True).click()
    expect(widget.get_by_role("status")).to_contain_text(ru("Case marked resolved."))
    expect(incident.locator(".recovery-status")).to_have_text(ru("Resolved"))
    expect(incident).to_have_class(re.compile(r"\brecovery-status-resolved\b"))
    expect(incident.get_by_role("button", name=ru("Mark resolved"), exact=True)).to_have_count(0)
    assert path_of(page) == CHECKOUT


@pytest.mark.browser
def test_a_master_cannot_resolve_a_manager_can(page):
    page.goto("/")
    sign_in(page, "olga")
    widget = open_checkout(page)
    record_incident(
        widget,
        en,
        category="Late start",
        severity="Minor",
        description="Started ten minutes late",
        action="Fewer back-to-back bookings",
    )
    incident = widget.locator("li.recovery-incident")
    expect(incident).to_have_count(1)
    expect(incident.locator(".recovery-status")).to_have_text("Open")
    expect(widget.get_by_role("button", name="Mark resolved")).to_have_count(0)

    sign_in(page, "marina")
    assert path_of(page) == CHECKOUT  # the switcher brings us back to the same page
    widget.get_by_role("button", name="Mark resolved", exact=True).click()
    expect(widget.get_by_role("status")).to_contain_text("Case marked resolved.")
    expect(incident.locator(".recovery-status")).to_have_text("Resolved")
    expect(widget.get_by_role("button", name="Mark resolved")).to_have_count(0)


@pytest.mark.browser
def test_mobile_widget_fits_the_viewport(make_page):
    page = make_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto("/")
    sign_in(page, "irina")
    widget = open_checkout(page)
    # A long unbroken word must wrap, not widen the page.
    record_incident(
        widget,
        en,
        category="Billing error",
        severity="Minor",
        description="Charged twice: " + "https://pay.example.com/receipt/" + "0123456789" * 8,
        action="Check the terminal before a second attempt",
    )

    width = page.evaluate("window.innerWidth")
    assert width == 390
    fields = widget.locator("select, textarea, input:not([type=hidden]), button")
    assert fields.count() >= 8
    for index in range(fields.count()):
        box = fields.nth(index).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (
            fields.nth(index).evaluate("e => e.outerHTML.slice(0, 120)"),
            box,
        )
    widget_box = widget.bounding_box()
    assert widget_box["x"] >= 0 and widget_box["x"] + widget_box["width"] <= width + 0.5
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    expect(widget.get_by_role("button", name="Record incident", exact=True)).to_be_visible()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "widget-mobile.png"), full_page=True)


@pytest.mark.browser
def test_admin_grants_hits_the_limit_and_a_manager_approves_from_the_queue(page):
    t = en
    page.goto("/")
    sign_in(page, "irina")
    widget = open_checkout(page)
    record_incident(
        widget,
        t,
        category="Result not as agreed",
        severity="Major",
        description="Colour came out orange",
        action="Strand test before every colouring",
    )
    case = widget.locator("li.recovery-incident").first
    expect(case.locator(".recovery-authority")).to_contain_text("per remedy alone")

    # within the authority: granted at once
    case.get_by_label(t("Remedy"), exact=True).select_option("gift")
    case.get_by_label(t("Amount"), exact=True).fill("1000")
    case.get_by_role("button", name=t("Grant, or ask a manager"), exact=True).click()
    expect(widget.get_by_role("status")).to_contain_text(t("Compensation granted."))
    case = page.locator("section#recovery-widget li.recovery-incident").first
    expect(case.locator("li.recovery-compensation")).to_have_count(1)
    expect(case.locator("li.recovery-compensation").first).to_contain_text(t("Granted"))

    # above the per-remedy limit: the same form files a request (a note for the manager is optional)
    case.get_by_label(t("Remedy"), exact=True).select_option("gift")
    case.get_by_label(t("Amount"), exact=True).fill("2000")
    case.get_by_label(t("Note (optional: a manager reads it with a request)"), exact=True).fill(
        "She is a regular of five years"
    )
    case.get_by_role("button", name=t("Grant, or ask a manager"), exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(t("Above your authority: the request went to a manager."))
    expect(page.locator("li.recovery-compensation", has_text=t("Waiting for a manager"))).to_have_count(1)

    # the manager approves it from the queue
    sign_in(page, "marina")
    page.get_by_role("link", name="Approvals", exact=True).click()
    request = page.locator("li.recovery-request", has_text="She is a regular of five years")
    expect(request).to_have_count(1)
    request.get_by_label(t("Note to the requester (optional)"), exact=True).fill("Agreed, thank her from us")
    request.get_by_role("button", name=t("Approve"), exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(t("Request approved."))
    expect(page.get_by_text(t("No requests are waiting. Well done."))).to_be_visible()

    # the admin sees the decision on the booking
    page.goto("/")  # (switching roles on the queue page would land her on a page she may not see)
    sign_in(page, "irina")
    widget = open_checkout(page)
    decided = widget.locator("li.recovery-compensation", has_text="Agreed, thank her from us")
    expect(decided).to_contain_text(t("Granted"))
    expect(decided).to_contain_text("Марина")


# -- flags: the badge in the day list and the client's history ------------------------------

ANNA_TOMORROW = "18"  # tomorrow, 13:30, Анна Смирнова, Елена (example_app/README.md)


def _tomorrow_day_list(page) -> None:
    page.goto("/")
    page.get_by_role("link", name=re.compile("Next day")).click()


@pytest.mark.browser
def test_the_badge_in_the_day_list_shows_its_reason_on_hover_and_keyboard_and_opens_her_history(page):
    page.goto("/")
    sign_in(page, "irina")
    widget = open_checkout(page)
    record_incident(
        widget,
        en,
        category="Late start",
        severity="Major",
        description="Started 25 minutes late <b>sorry</b>",
        action="A buffer after long colourings",
    )

    _tomorrow_day_list(page)
    badges = page.locator("[data-recovery-flag]")
    expect(badges).to_have_count(1)  # Анна only, and not on today's visit where it went wrong
    row = page.locator(f'tr[data-booking-id="{ANNA_TOMORROW}"]')
    badge = row.locator('a.recovery-badge[data-recovery-flag="vip"]')
    expect(badge).to_have_count(1)
    expect(badge).to_have_attribute("title", re.compile(r"Late start \(major\): Started 25 minutes late <b>sorry</b>"))
    # screen readers hear the reason as part of the link
    expect(badge).to_have_accessible_name(re.compile(r"^VIP\s*: Last visit: Late start"))
    reason = badge.locator(".recovery-badge-reason")
    badge.hover()
    hidden = reason.bounding_box()  # the mouse gets the title; the text stays clipped to 1 px
    assert hidden["width"] <= 1 and hidden["height"] <= 1, hidden
    expect(reason.locator("b")).to_have_count(0)  # the typed markup is text

    # keyboard: Tab to the badge, the reason shows beside it
    page.locator("body").click(position={"x": 1, "y": 1})
    for _ in range(60):
        page.keyboard.press("Tab")
        if badge.evaluate("el => el === document.activeElement"):
            break
    expect(badge).to_be_focused()
    expect(reason).to_be_visible()
    expect(reason).to_have_css("clip", "auto")
    expect(reason).to_contain_text("Started 25 minutes late <b>sorry</b>")
    box = reason.bounding_box()
    assert box["width"] > 100 and box["height"] > 16, box

    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/recovery/clients/1\?booking=18$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Client history: Анна Смирнова")
    flag = page.locator('li.recovery-flag[data-recovery-flag="vip"]')
    expect(flag).to_contain_text("Extra attention")
    expect(flag).to_contain_text("Set by Ирина Белова")
    expect(page.locator("li.recovery-visit")).to_have_count(1)
    expect(page.locator("li.recovery-visit").first).to_contain_text("Started 25 minutes late <b>sorry</b>")

    flag.get_by_label("What you did (optional)", exact=True).fill("Seen, compliment offered")
    flag.get_by_role("button", name="Mark as seen", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Flag marked as seen.")
    expect(page.locator("li.recovery-flag").first).to_contain_text("Seen by Ирина Белова")
    expect(page.locator("li.recovery-flag").first).to_contain_text("Seen, compliment offered")


@pytest.mark.browser
def test_a_manager_warns_the_next_desk_and_the_client_page_fits_a_phone(make_page):
    page = make_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto("/")
    sign_in(page, "marina")
    page.goto(f"/recovery/clients/1?booking={ANNA_TOMORROW}")
    page.get_by_text("Flag the client by hand", exact=True).click()
    page.get_by_label("Conduct warning (manager on duty)", exact=True).check()
    page.get_by_label("Reason (a colleague reads it at the desk)", exact=True).fill("Raised her voice at Ольга")
    page.get_by_role("button", name="Set the flag", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Flag set for the client's next visit.")
    expect(page.locator('li.recovery-flag[data-recovery-flag="conduct"]')).to_contain_text("Raised her voice")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # a master at the desk sees the warning, not the manager's words
    sign_in(page, "olga")
    _tomorrow_day_list(page)
    badge = page.locator(f'tr[data-booking-id="{ANNA_TOMORROW}"] .recovery-badge')
    expect(badge).to_have_attribute("data-recovery-flag", "conduct")
    expect(badge).to_have_attribute("title", re.compile("ask the manager on duty"))
    assert "Raised her voice" not in badge.get_attribute("title")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "badge-mobile.png"), full_page=True)
