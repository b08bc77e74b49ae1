"""``flask recovery stats``: the journal's figures on the command line, as table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from flask_recovery import Booking
from flask_recovery.domain import stats
from flask_recovery.models import Visit
from tests.test_stats import MOSCOW, NOW, build_fixture

PERIOD = ["--since", "2026-03-01", "--until", "2026-04-30"]


@pytest.fixture
def salon(app, host, monkeypatch):
    monkeypatch.setattr(stats, "utcnow", lambda: NOW)
    with app.app_context():
        build_fixture(app, host)
    return app


def run(runner, *args):
    result = runner.invoke(args=["recovery", "stats", *args])
    return result


@pytest.mark.config(**MOSCOW)
def test_json_has_every_figure(salon, runner):
    result = run(runner, *PERIOD, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["period"]["since"] == "2026-03-01" and data["period"]["timezone"] == "Europe/Moscow"
    assert data["incidents"]["total"] == 7
    assert data["speed"]["recognition"] == {"cases": 6, "median_minutes": 25.0, "p90_minutes": 180.0}
    assert [m["spent"] for m in data["spend"]["months"]] == [80_000, 130_000]
    assert data["followups"]["answer_rate"] == 0.8
    assert data["returns"]["with_incident"]["90"] == {"clients": 5, "returned": 4, "rate": 0.8}
    assert data["open_cases"]["total"] == 6


@pytest.mark.config(**MOSCOW)
def test_table_is_readable(salon, runner):
    result = run(runner, *PERIOD, "--location", "north")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Recovery journal 2026-03-01 .. 2026-04-30 (Europe/Moscow; north)"
    weekly = lines.index("Incidents per week")
    assert lines[weekly + 1].split() == ["week", "late", "result", "total"]  # a column per category
    assert lines[weekly + 2 + 6].split() == ["2026-03-30", "1", "0", "1"]  # I3: 1 April in Moscow
    assert lines[weekly + 2 + 7].split() == ["2026-04-06", "0", "1", "1"]  # I4: Monday 6 April in Moscow
    assert "Minutes from the visit's end" in lines
    speed = lines.index("Minutes from the visit's end")
    assert lines[speed + 1].split() == ["measure", "cases", "median_minutes", "p90_minutes"]
    assert lines[speed + 3].split() == ["recognition", "2", "180.0", "252.0"]
    spend = lines.index("Compensation spend per month")
    assert lines[spend + 4].split() == ["2026-04", "2", "130000", "100000", "-30000", "EUR"]


@pytest.mark.config(**MOSCOW)
def test_csv_all_figures_in_a_long_format(salon, runner):
    result = run(runner, *PERIOD, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {r["figure"] for r in rows} == set(stats.FIGURES)
    value = {(r["figure"], r["row"], r["column"]): r["value"] for r in rows}
    assert value[("followups", "1", "good_share")] == "0.75"
    assert value[("speed", "2", "p90_minutes")] == "1080.0"
    assert value[("returns", "4", "rate")] == "0.5"  # without an incident, 30 days


@pytest.mark.config(**MOSCOW)
def test_csv_one_figure(salon, runner):
    result = run(runner, *PERIOD, "--format", "csv", "--figure", "returns", "--category", "late")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    # late: c1 (50 days) and c3 (never).
    assert rows[:3] == [
        {"group": "with_incident", "days": "30", "clients": "2", "returned": "0", "rate": "0.0"},
        {"group": "with_incident", "days": "60", "clients": "2", "returned": "1", "rate": "0.5"},
        {"group": "with_incident", "days": "90", "clients": "2", "returned": "1", "rate": "0.5"},
    ]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--since", "31.03.2026"], "'--since'"),
        (["--until", "2026-13-01"], "'--until'"),
        (["--since", "2026-05-01", "--until", "2026-04-01"], "'--since'"),
        (["--since", "2020-01-01", "--until", "2026-01-01"], "'--until'"),
        (["--category", "nonsense"], "'--category'"),
    ],
)
def test_bad_options_are_named(app, runner, args, option):
    result = run(runner, *args)
    assert result.exit_code == 2
    assert f"Invalid value for {option}" in result.output
    assert "Traceback" not in result.output


def test_sync_visits_needs_the_loader(app, runner):
    result = run(runner, "--sync-visits")
    assert result.exit_code == 1
    assert "needs a loader registered with @recovery.bookings_between" in result.output


def test_sync_visits_copies_the_hosts_bookings_first(app, runner):
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    bookings = [
        Booking(
            id=f"h{n}",
            client_id=f"c{n % 4}",
            client_name="Someone",
            client_email=None,
            starts_at=start + timedelta(days=n),
            ends_at=start + timedelta(days=n, hours=1),
            staff_id="s-master",
            service="Haircut",
            status="completed",
            location="center",
        )
        for n in range(40)
    ]
    app.recovery.bookings_between(lambda a, b: [x for x in bookings if a <= x.starts_at < b])
    result = runner.invoke(args=["recovery", "stats", *PERIOD, "--sync-visits", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "synced 40 bookings into recovery_visits." in result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["returns"]["visits_known"] == 40
    with app.app_context():
        assert app.db.session.query(Visit).count() == 40
