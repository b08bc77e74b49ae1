"""The KPI journal in a real browser: Debian's Chromium through Playwright.

A host app on a real HTTP server (a thread running ``werkzeug.serving.make_server``, as in
``tests/test_browser.py``) serves the hand-computed salon of ``tests/test_stats.py`` to a
logged-in manager. The charts must render (SVG boxes with bars of real width), carry
their accessible names, sit beside their tables, fit a 390 px phone, and the filter form
must work without JavaScript. Screenshots for people: ``journal.png`` and
``journal-mobile.png`` in ``RECOVERY_TEST_SCREENSHOTS`` (default: the temp directory).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

import pytest
from flask import got_request_exception
from playwright.sync_api import expect
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_recovery.domain import stats
from tests.conftest import Host, browser_pages, make_app
from tests.test_stats import MOSCOW, NOW, build_fixture

SCREENSHOTS = Path(os.environ.get("RECOVERY_TEST_SCREENSHOTS") or tempfile.gettempdir())
TIMEOUT_MS = 5000
JOURNAL = "/recovery/journal?since=2026-03-01&until=2026-04-30"
CHARTS = {
    "weekly": "Incidents per week by category",
    "speed": "Time from the visit's end",
    "open_cases": "Open cases by age",
    "spend": "Compensation spend per month",
    "followups": "Answers to the check-in mail",
    "returns": "Clients who booked again",
}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


@pytest.fixture
def live_journal(db_url, monkeypatch):
    """The salon on a real HTTP server, a manager logged in; tables dropped afterwards."""
    monkeypatch.setattr(stats, "utcnow", lambda: NOW)
    host = Host()
    app = make_app(db_url, {**MOSCOW, "WTF_CSRF_ENABLED": True}, host)
    with app.app_context():
        app.recovery.drop_all()
        app.recovery.create_all()
        build_fixture(app, host)
        app.db.session.commit()  # the host's commit (the rules only flush)
        app.db.session.remove()
    host.login("manager")
    errors: list[BaseException] = []

    def _record(sender, exception, **extra):
        errors.append(exception)

    got_request_exception.connect(_record, app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        got_request_exception.disconnect(_record, app)
        with app.app_context():
            app.db.session.commit()  # the host's commit (the rules only flush)
            app.db.session.remove()
            app.recovery.drop_all()
            app.db.engine.dispose()
    assert not errors, f"the app raised while serving the browser: {errors!r}"


@pytest.fixture
def make_page(browser, live_journal):
    """``make_page(**context_options)``: a page in a fresh context on the live server.

    Contexts close before the server stops (this fixture depends on ``live_journal``).
    """
    with browser_pages(browser, live_journal, TIMEOUT_MS) as make:
        yield make


@pytest.mark.browser
def test_the_journal_draws_its_charts_beside_their_tables(make_page):
    page = make_page(viewport={"width": 1280, "height": 900})
    page.goto(JOURNAL)
    expect(page.get_by_role("heading", name="Recovery journal", level=1)).to_be_visible()
    for kind, name in CHARTS.items():
        chart = page.get_by_role("img", name=name, exact=True)
        expect(chart).to_be_visible()
        assert chart.get_attribute("data-chart") == kind
        box = chart.bounding_box()
        assert box["width"] > 300 and box["height"] > 40, (kind, box)
        # Every chart has bars that really take space on the screen.
        widths = chart.locator("rect.recovery-bar").evaluate_all("rs => rs.map(r => r.getBoundingClientRect().width)")
        assert widths and max(widths) > 20, (kind, widths)
    weekly = page.get_by_role("img", name=CHARTS["weekly"], exact=True)
    expect(weekly.locator("rect.recovery-bar")).to_have_count(7)
    expect(weekly.locator('rect[data-series="client_conduct"]')).to_have_attribute("fill", "#000000")
    # The description a screen reader reads, and the table view of every chart.
    expect(weekly).to_have_accessible_description(
        re.compile(r"^7 incidents in 10 weeks\. Most often: Late start \(2\)")
    )
    for caption in (
        "Incidents per week by category",
        "Incidents per month",
        "Minutes from the visit's end",
        "Open cases by age",
        "Compensation spend per month",
        "Answers to the check-in mail",
        "Clients who booked again",
    ):
        expect(page.get_by_role("table", name=caption, exact=True)).to_be_visible()
    returns = page.get_by_role("table", name="Clients who booked again", exact=True)
    expect(returns.get_by_role("row", name=re.compile("^After an incident"))).to_contain_text("80% (4 of 5)")
    expect(page.locator('dd[data-figure="recognition"]')).to_have_text("25 min")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "journal.png"), full_page=True)

    # The filter is a plain GET form: choose a category, press Show.
    page.get_by_label("Category", exact=True).select_option(label="Late start")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page).to_have_url(re.compile(r"category=late"))
    expect(page.locator('dd[data-figure="incidents"]')).to_have_text("2")
    expect(page.get_by_role("img", name=CHARTS["weekly"], exact=True).locator("rect.recovery-bar")).to_have_count(2)


@pytest.mark.browser
def test_the_journal_fits_a_phone(make_page):
    page = make_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.goto(JOURNAL)
    expect(page.get_by_role("img", name=CHARTS["weekly"], exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling of the page
    for name in CHARTS.values():
        box = page.get_by_role("img", name=name, exact=True).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
    # Chart text stays readable: at least 11 CSS pixels high on the phone.
    heights = page.locator("svg.recovery-chart-svg text").evaluate_all(
        "ts => ts.filter(t => t.textContent.trim()).map(t => t.getBoundingClientRect().height)"
    )
    assert min(heights) >= 11, min(heights)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "journal-mobile.png"), full_page=True)


@pytest.mark.browser
def test_the_journal_in_russian(make_page):
    page = make_page(locale="ru-RU")
    page.goto(JOURNAL)
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    monthly = page.locator('table[data-table="monthly"]')
    expect(monthly).to_contain_text("март 2026")
    expect(monthly).to_contain_text("апрель 2026")
    expect(page.locator('table[data-table="spend"]')).to_contain_text("1\xa0300,00")
