"""The KPI journal page and its CSV downloads: what a manager sees, and who may see it.

The figures themselves are checked against the hand-computed salon of
``tests/test_stats.py``; here the page must show them, in tables and charts, to the
right people only, and never fail on bad input.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from flask_recovery import Staff
from flask_recovery.domain import stats
from flask_recovery.domain.visits import refresh_next_visits
from flask_recovery.models import Compensation, FollowUp, Incident, Visit
from tests.test_stats import MOSCOW, NOW, build_fixture, utc

PAGE = "/recovery/journal"
CSV_URL = "/recovery/journal.csv"
PERIOD = "since=2026-03-01&until=2026-04-30"
NORTH_MANAGER = Staff(id="s-north-manager", name="Nadia", role="manager", location="north")


@pytest.fixture
def frozen(monkeypatch):
    """The journal's clock stands at ``NOW`` (ages of open cases, passed return windows)."""
    monkeypatch.setattr(stats, "utcnow", lambda: NOW)
    return NOW


@pytest.fixture
def salon(app, host, frozen):
    with app.app_context():
        build_fixture(app, host)
    host.login("manager")
    return app


def cell(html: str, table: str, row: str) -> list[str]:
    """The cells of the row headed ``row`` in the table ``data-table=table``, as text."""
    body = html.split(f'data-table="{table}"', 1)[1].split("</table>", 1)[0]
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        if cells and cells[0] == row:
            return cells[1:]
    raise AssertionError(f"no row {row!r} in table {table!r}")


def svgs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<svg [^>]*data-chart="([a-z_]+)"[^>]*>(.*?)</svg>', html, re.S))


# -- what the manager sees ---------------------------------------------------------------------


@pytest.mark.config(**MOSCOW)
def test_manager_sees_every_figure_in_charts_and_tables(salon, client):
    response = client.get(f"{PAGE}?{PERIOD}")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Recovery journal</h1>" in html
    assert "Mar 1, 2026 – Apr 30, 2026" in html and "Europe/Moscow" in html

    summary = dict(re.findall(r'<dd data-figure="([a-z0-9-]+)">([^<]*)</dd>', html))
    assert summary == {"incidents": "7", "open": "6", "recognition": "25 min", "answer-rate": "80%", "return-90": "80%"}

    assert cell(html, "weekly", "6 Apr") == ["0", "1", "0", "0", "1", "2"]
    assert cell(html, "weekly", "Total") == ["2", "2", "1", "1", "1", "7"]
    assert cell(html, "monthly", "March 2026") == ["1", "1", "0", "0", "0", "2"]
    assert cell(html, "monthly", "April 2026") == ["1", "1", "1", "1", "1", "5"]
    assert cell(html, "speed", "To recognition") == ["6", "25 min", "3 h"]
    assert cell(html, "speed", "To resolution") == ["4", "3 h", "18 h"]
    assert cell(html, "open_cases", "under a day") == ["1"]
    assert cell(html, "open_cases", "over 30 days") == ["3"]
    assert cell(html, "spend", "March 2026") == ["2", "€800.00", "€1,000.00", "€200.00"]
    assert cell(html, "spend", "April 2026") == ["2", "€1,300.00", "€1,000.00", "over by €300.00"]
    assert cell(html, "followups", "Answer rate") == ["80%"]
    assert cell(html, "followups", "Share of all good") == ["75%"]
    assert cell(html, "returns", "After an incident") == ["40% (2 of 5)", "60% (3 of 5)", "80% (4 of 5)"]
    assert cell(html, "returns", "No incident") == ["50% (2 of 4)", "75% (3 of 4)", "75% (3 of 4)"]

    charts = svgs(html)
    assert set(charts) == {"weekly", "speed", "open_cases", "spend", "followups", "returns"}
    for name, body in charts.items():
        assert "<title id=" in body and "<desc id=" in body, name
    assert (
        len(
            re.findall(
                r'role="img" aria-labelledby="recovery-chart-[a-z]+-title"'
                r' aria-describedby="recovery-chart-[a-z]+-desc"',
                html,
            )
        )
        == 6
    )
    weekly = charts["weekly"]
    assert len(re.findall(r'<rect class="recovery-bar"', weekly)) == 7  # one per non-empty week x category
    assert 'data-series="client_conduct" data-value="1"' in weekly
    assert "7 incidents in 10 weeks. Most often: Late start (2)." in weekly
    assert "Within 90 days: 80% after an incident, 75% without." in charts["returns"]
    assert 'class="recovery-marker"' in charts["spend"] and "Plan: €1,000.00 a month" in charts["spend"]
    assert 'data-series="over"' in charts["spend"]  # April is over the plan
    # The page says which figures need what from the host.
    for words in ("recovery.booking_created(booking_id)", "recovery.visit_completed(booking_id)", "bookings_between"):
        assert words in html
    assert "Visits known in this period: 17." in html
    assert "journal.css" in html


@pytest.mark.config(**MOSCOW)
def test_filters_by_location_and_category(salon, client):
    html = client.get(f"{PAGE}?{PERIOD}&location=north").text
    assert re.search(r'<dd data-figure="incidents">2</dd>', html)
    assert '<option value="north" selected>north</option>' in html
    html = client.get(f"{PAGE}?{PERIOD}&category=late").text
    assert re.search(r'<dd data-figure="incidents">2</dd>', html)
    assert cell(html, "spend", "April 2026")[:2] == ["1", "€400.00"]
    assert '<option value="late" selected>Late start</option>' in html


@pytest.mark.config(**MOSCOW)
def test_the_default_period_is_the_last_90_days(salon, client):
    html = client.get(PAGE).text
    assert 'name="since" value="2026-05-18"' in html and 'name="until" value="2026-08-15"' in html
    assert re.search(r'<dd data-figure="incidents">3</dd>', html)  # I10, I11 and I12, all in August
    assert re.search(r'<dd data-figure="open">6</dd>', html)


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Moscow")
def test_an_empty_journal_says_so(app, host, client, frozen):
    host.login("manager")
    html = client.get(PAGE).text
    assert "No incidents in this period." in html
    assert "No visits are known for this period, so return rates cannot be measured yet." in html
    assert "No monthly plan is set (RECOVERY_MONTHLY_BUDGET)." in html
    assert re.search(r'<dd data-figure="recognition">—</dd>', html)
    assert len(svgs(html)) == 6


@pytest.mark.config(**MOSCOW)
def test_russian_page(salon, client):
    html = client.get(f"{PAGE}?{PERIOD}&lang=ru", headers={"Accept-Language": "ru"}).text
    assert '<html lang="ru">' in html
    assert "март 2026" in html and "апрель 2026" in html  # month names in Russian
    assert "1\xa0300,00" in html  # money the Russian way
    assert cell(html, "followups", _ru_row(html, "followups", 2))[0].replace("\xa0", " ") == "80 %"


def _ru_row(html: str, table: str, index: int) -> str:
    body = html.split(f'data-table="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<th scope="row">([^<]*)</th>', body)[index]


@pytest.mark.config(**MOSCOW)
def test_user_text_is_escaped_in_charts_and_tables(app, host, client, frozen):
    with app.app_context():
        session = app.db.session
        session.add(
            Incident(
                booking_id="x1",
                client_id="c1",
                location='<img src=x onerror="alert(1)">',
                category="late",
                severity="minor",
                description="x",
                recorded_by="s",
                visit_started_at=utc(2026, 3, 2, 9),
                visit_ended_at=utc(2026, 3, 2, 10),
                recorded_at=utc(2026, 3, 2, 10),
            )
        )
        session.commit()
    host.login("manager")
    html = client.get(f"{PAGE}?{PERIOD}").text
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


# -- who may see it ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 401), ("master", 403), ("admin", 403), ("receptionist", 403), ("north_admin", 403), ("manager", 200)],
)
@pytest.mark.parametrize("url", [PAGE, f"{CSV_URL}?figure=weekly"])
def test_only_managers_may_open_the_journal(app, host, client, who, status, url):
    host.login(who)
    response = client.get(url)
    assert response.status_code == status
    if status != 200:
        assert "recovery-chart" not in response.text and "text/csv" not in response.content_type
        assert response.content_type.startswith("text/html")


@pytest.mark.config(**MOSCOW)
def test_a_manager_of_one_location_sees_only_it(salon, host, client):
    host.staff = NORTH_MANAGER
    html = client.get(f"{PAGE}?{PERIOD}").text
    assert re.search(r'<dd data-figure="incidents">2</dd>', html)  # I3 and I4
    assert 'id="journal-location"' not in html  # no choice of location
    assert re.search(r"·\s+north\s+·", html)
    assert cell(html, "spend", "March 2026")[:2] == ["0", "€0.00"]
    assert client.get(f"{PAGE}?{PERIOD}&location=center").status_code == 404
    assert client.get(f"{CSV_URL}?{PERIOD}&location=center&figure=spend").status_code == 404
    rows = list(csv.DictReader(io.StringIO(client.get(f"{CSV_URL}?{PERIOD}&figure=spend").text.lstrip("\ufeff"))))
    assert [r["spent"] for r in rows] == ["0", "130000"]


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=31.03.2026", "since", "Enter a date like 2026-03-31."),
        ("until=2026-02-30", "until", "Enter a date like 2026-03-31."),
        ("since=2026-04-02&until=2026-04-01", "since", "The start must not be after the end."),
        ("since=2020-01-01&until=2026-01-01", "until", "Choose a period of at most two years."),
        ("since=1900-01-01", "since", "Enter a date between the years 2000 and 2100."),
        ("category=%3Cscript%3E", "category", "Choose a category from the list."),
        ("since=" + "9" * 5000, "since", "Enter a date like 2026-03-31."),
    ],
)
def test_bad_filters_get_a_form_message(app, host, client, query, field, message):
    host.login("manager")
    response = client.get(f"{PAGE}?{query}")
    assert response.status_code == 422
    html = response.text
    assert f'<p class="recovery-error" id="journal-{field}-error">{message}</p>' in html
    assert re.search(rf'id="journal-{field}"[^>]*aria-invalid="true" aria-describedby="journal-{field}-error"', html)
    assert 'role="alert"' in html and f'href="#journal-{field}"' in html
    assert "<script>" not in html
    assert "recovery-chart-svg" not in html
    # The download refuses the same input with a page, not a traceback.
    download = client.get(f"{CSV_URL}?{query}&figure=weekly")
    assert download.status_code == 422 and message in download.text


def test_unknown_figure_is_refused(app, host, client):
    host.login("manager")
    response = client.get(f"{CSV_URL}?figure=passwords")
    assert response.status_code == 422
    assert "Unknown figure; choose one of: weekly, monthly, speed" in response.text


# -- CSV -----------------------------------------------------------------------------------------


def parse_csv(response) -> list[dict[str, str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # spreadsheets then read UTF-8 (Cyrillic) correctly
    return list(csv.DictReader(io.StringIO(text[1:])))


@pytest.mark.config(**MOSCOW)
def test_csv_downloads(salon, client):
    response = client.get(f"{CSV_URL}?{PERIOD}&figure=weekly")
    assert response.status_code == 200
    assert response.content_type == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="recovery-weekly-2026-03-01-2026-04-30.csv"'
    rows = parse_csv(response)
    assert len(rows) == 10 * 5  # weeks x categories present
    assert {"week": "2026-04-06", "category": "client_conduct", "category_label": "Client conduct (abuse of staff)",
            "incidents": "1"} in rows  # fmt: skip
    assert sum(int(r["incidents"]) for r in rows) == 7

    speed = parse_csv(client.get(f"{CSV_URL}?{PERIOD}&figure=speed"))
    assert speed == [
        {"measure": "recognition", "cases": "6", "median_minutes": "25.0", "p90_minutes": "180.0"},
        {"measure": "resolution", "cases": "4", "median_minutes": "180.0", "p90_minutes": "1080.0"},
    ]
    spend = parse_csv(client.get(f"{CSV_URL}?{PERIOD}&figure=spend"))
    assert [(r["month"], r["spent"], r["left"]) for r in spend] == [
        ("2026-03", "80000", "20000"),
        ("2026-04", "130000", "-30000"),
    ]
    returns = parse_csv(client.get(f"{CSV_URL}?{PERIOD}&figure=returns&location=center"))
    assert returns[0] == {"group": "with_incident", "days": "30", "clients": "3", "returned": "2", "rate": "0.6667"}
    response = client.get(f"{CSV_URL}?{PERIOD}&figure=returns&location=center")
    assert response.headers["Content-Disposition"].endswith('-2026-04-30-center.csv"')

    everything = parse_csv(client.get(f"{CSV_URL}?{PERIOD}&figure=all"))
    assert {r["figure"] for r in everything} == set(stats.FIGURES)
    assert {"figure": "followups", "row": "1", "column": "answer_rate", "value": "0.8"} in everything
    # The page links every download with its filter.
    html = client.get(f"{PAGE}?{PERIOD}&category=late").text
    assert (
        'href="/recovery/journal.csv?figure=spend&amp;since=2026-03-01&amp;until=2026-04-30&amp;category=late"' in html
    )


@pytest.mark.config(
    RECOVERY_TIMEZONE="Europe/Moscow",
    RECOVERY_CATEGORIES={"late": '=HYPERLINK("http://evil.test","click")', "result": "<b>Result</b>"},
)
def test_csv_cannot_carry_a_formula_and_labels_are_escaped(app, host, client, frozen):
    with app.app_context():
        for n, category in enumerate(("late", "result")):
            app.db.session.add(
                Incident(
                    booking_id=f"x{n}",
                    client_id="c1",
                    location="@center",
                    category=category,
                    severity="minor",
                    description="x",
                    recorded_by="s",
                    visit_started_at=utc(2026, 3, 2, 9),
                    visit_ended_at=utc(2026, 3, 2, 10),
                    recorded_at=utc(2026, 3, 2, 10),
                )
            )
        app.db.session.commit()
    host.login("manager")
    rows = parse_csv(client.get(f"{CSV_URL}?{PERIOD}&figure=weekly"))
    labels = {r["category_label"] for r in rows}
    assert labels == {'\'=HYPERLINK("http://evil.test","click")', "<b>Result</b>"}
    response = client.get(f"{CSV_URL}?{PERIOD}&figure=weekly&location=%40center")
    assert response.headers["Content-Disposition"].endswith('-2026-04-30--center.csv"')  # no quote or @ in the name
    response = client.get(f'{CSV_URL}?{PERIOD}&figure=weekly&location=Центр"')
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].endswith('-2026-04-30-------.csv"')  # ASCII only
    html = client.get(f"{PAGE}?{PERIOD}").text
    assert "<b>Result</b>" not in html and "&lt;b&gt;Result&lt;/b&gt;" in html


# -- scale ---------------------------------------------------------------------------------------


def _count_queries(app, client, url: str) -> int:
    with app.app_context():
        engine = app.db.engine
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def _grow(app, times: int) -> None:
    """Add ``times`` more incidents of every kind, with visits, compensations and check-ins."""
    with app.app_context():
        session = app.db.session
        for n in range(times):
            when = utc(2026, 3, 1, 9) + timedelta(hours=5 * n)
            client_id = f"g{n % 17}"
            row = Incident(
                booking_id=f"g{n}",
                client_id=client_id,
                location=("center", "north", "south")[n % 3],
                category=("late", "result", "hygiene", "billing", "client_conduct")[n % 5],
                severity="minor",
                conduct=n % 5 == 4,
                description="x",
                recorded_by="s",
                status=("open", "resolved", "closed", "reopened")[n % 4],
                visit_started_at=when - timedelta(hours=1),
                visit_ended_at=when,
                recorded_at=when + timedelta(minutes=n),
                resolved_at=when + timedelta(hours=n % 30) if n % 4 in (1, 2) else None,
            )
            session.add(row)
            session.flush()
            session.add(Visit(booking_id=f"g{n}", client_id=client_id, starts_at=when - timedelta(hours=1),
                              ends_at=when, status="completed"))  # fmt: skip
            session.add(Visit(booking_id=f"gv{n}", client_id=f"v{n}", starts_at=when, ends_at=when, status="completed"))
            session.add(Compensation(incident_id=row.id, booking_id=row.booking_id, client_id=client_id, kind="gift",
                                     amount=1000 + n, currency="EUR", status="granted", requested_by="s",
                                     requested_by_role="manager", charged_to="s", charged_month="2026-03"))  # fmt: skip
            session.add(FollowUp(booking_id=f"g{n}", client_id=client_id, kind="checkin", status="sent",
                                 due_at=when, sent_at=when + timedelta(days=1),
                                 answer=("good", "not_right", None)[n % 3]))  # fmt: skip
        session.flush()
        refresh_next_visits(session)  # a bulk load: every row's next visit at once
        session.commit()


@pytest.mark.config(**MOSCOW)
def test_the_page_costs_the_same_queries_for_10_and_for_250_incidents(salon, client):
    url = f"{PAGE}?{PERIOD}"
    small = _count_queries(salon, client, url)
    _grow(salon, 240)
    with salon.app_context():
        assert salon.db.session.query(Incident).count() == 252
    big = _count_queries(salon, client, url)
    assert small == big
    assert big <= 10  # seven for the figures, the locations list, and nothing per row
    html = client.get(url).text
    assert re.search(r'<dd data-figure="incidents">247</dd>', html)  # 7 + 240 (all in the period)
    # The downloads are just as flat.
    assert _count_queries(salon, client, f"{CSV_URL}?{PERIOD}&figure=all") == big - 1
