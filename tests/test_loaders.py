"""The host's loaders: naive datetimes (read per RECOVERY_NAIVE_DATETIMES), many bookings at
once (``bookings_loader``), the normalised ``bookings_between`` loader, and the new fields
``Booking.client_phone`` and ``Staff.locale``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_time
from flask import render_template_string

from flask_recovery import Booking, ConfigError, NaiveDatetimeError, RecoveryError, Staff
from flask_recovery.models import Visit

from .conftest import make_app

MOSCOW = "Europe/Moscow"
NOON = datetime(2026, 3, 10, 12, 0)  # naive, as a small site stores it


def naive(host, booking_id="b1", starts_at=NOON, hours=1, **overrides):
    """A booking with naive times (what most small sites keep in their database)."""
    return host.add_booking(booking_id, starts_at=starts_at, ends_at=starts_at + timedelta(hours=hours), **overrides)


def naive_messages(caplog):
    return [r for r in caplog.records if r.name == "flask_recovery" and "naive datetimes" in r.getMessage()]


# -- naive datetimes ------------------------------------------------------------------


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_naive_times_are_read_as_local_time_in_the_salons_time_zone(app, host):
    naive(host)
    with app.app_context():
        booking = app.recovery.load_booking("b1")
    assert booking.starts_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert booking.ends_at == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert booking.starts_at.utcoffset() == timedelta(0)
    assert host.bookings["b1"].starts_at.tzinfo is None  # the host's own object is left as it was


@pytest.mark.config(RECOVERY_TIMEZONE="Europe/Berlin")
def test_local_time_across_the_clock_changes_follows_pep_495(app, host):
    naive(host, "autumn", starts_at=datetime(2026, 10, 25, 2, 30))  # 02:30 happens twice
    naive(host, "autumn-second", starts_at=datetime(2026, 10, 25, 2, 30, fold=1))
    naive(host, "spring", starts_at=datetime(2026, 3, 29, 2, 30))  # 02:30 does not exist
    with app.app_context():
        load = app.recovery.load_booking
        assert load("autumn").starts_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
        assert load("autumn-second").starts_at == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # the second (CET)
        spring = load("spring").starts_at
    assert spring == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert spring.astimezone(ZoneInfo("Europe/Berlin")).hour == 3  # moved forward past the gap


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW, RECOVERY_NAIVE_DATETIMES="utc")
def test_utc_mode_reads_naive_times_as_utc(app, host, caplog):
    naive(host)
    with app.app_context():
        booking = app.recovery.load_booking("b1")
    assert booking.starts_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert naive_messages(caplog) == []


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_aware_times_are_kept_as_they_are(app, host):
    aware = host.add_booking("b1", starts_at=datetime(2026, 3, 10, 12, tzinfo=ZoneInfo("Asia/Tokyo")))
    with app.app_context():
        assert app.recovery.load_booking("b1") is aware


@pytest.mark.config(RECOVERY_NAIVE_DATETIMES="error")
def test_error_mode_refuses_a_naive_time_naming_the_field(app, host):
    naive(host)
    host.add_booking("b2", ends_at=datetime(2026, 3, 10, 13, 0))  # only ends_at is naive
    with app.app_context():
        with pytest.raises(NaiveDatetimeError) as starts:
            app.recovery.load_booking("b1")
        with pytest.raises(NaiveDatetimeError) as ends:
            app.recovery.load_booking("b2")
    assert isinstance(starts.value, RecoveryError) and isinstance(starts.value, ValueError)
    assert starts.value.field == "starts_at" and "starts_at" in starts.value.message
    assert ends.value.field == "ends_at" and "ends_at" in ends.value.message
    assert starts.value.to_dict()["error"]["code"] == "naive_datetime"
    assert starts.value.status == 422


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_reading_naive_times_as_local_is_logged_once_per_app(app, host, caplog, tmp_path):
    naive(host)
    naive(host, "b2")
    caplog.set_level(logging.WARNING, logger="flask_recovery")
    with app.app_context():
        for booking_id in ("b1", "b2", "b1"):
            app.recovery.load_booking(booking_id)
        app.recovery.load_bookings(["b1", "b2"])
    messages = naive_messages(caplog)
    assert len(messages) == 1
    assert "Europe/Moscow" in messages[0].getMessage() and "RECOVERY_NAIVE_DATETIMES" in messages[0].getMessage()

    other = make_app(f"sqlite:///{tmp_path / 'other.sqlite'}", {"RECOVERY_TIMEZONE": MOSCOW}, host)
    with other.app_context():
        other.recovery.load_booking("b1")
    assert len(naive_messages(caplog)) == 2  # a second app warns for itself


def test_a_naive_booking_can_be_built_outside_any_app():
    booking = Booking("b1", "c1", "Anna", None, NOON, NOON + timedelta(hours=1), None, "Haircut")
    assert booking.starts_at == NOON
    with pytest.raises(ValueError, match="Booking.starts_at must be a datetime"):
        Booking("b1", "c1", "Anna", None, "2026-03-10 12:00", NOON, None, "Haircut")


# -- the host's pages with a naive loader ------------------------------------------------


@pytest.fixture
def desk(app, host):
    """A host page with the badge and the widget of one booking, as a host writes it."""

    @app.get("/desk/<booking_id>")
    def desk_page(booking_id):
        return render_template_string(
            "<main><p>{{ recovery_badge(booking_id) }}</p>{{ recovery_widget(booking_id) }}</main>",
            booking_id=booking_id,
        )

    return app.test_client()


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_a_host_page_with_a_naive_loader_shows_the_badge_and_the_widget(app, host, desk):
    past = datetime.now().replace(microsecond=0) - timedelta(days=3)  # naive, the salon's wall clock
    naive(host, "past", starts_at=past)
    naive(host, "b1", starts_at=past + timedelta(days=5, hours=1), status="booked")
    host.login("admin")
    recorded = desk.post(
        "/recovery/api/bookings/past/incidents",
        json={"category": "late", "severity": "major", "description": "Master started 25 minutes late"},
    )
    assert recorded.status_code == 201, recorded.get_data(as_text=True)

    response = desk.get("/desk/b1")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-recovery-flag="vip"' in html  # her next booking carries the extra-attention badge
    assert 'id="recovery-widget"' in html and "Haircut" in html
    shown = format_time(past + timedelta(days=5, hours=1), "short", locale="en")
    assert shown in html  # the naive wall-clock time is shown as it is in the salon (not shifted)


@pytest.mark.config(RECOVERY_NAIVE_DATETIMES="error")
def test_error_mode_shows_a_small_error_in_the_widget_not_a_500(app, host, desk):
    naive(host)
    host.login("admin")
    with app.test_request_context("/desk/b1"):
        html = render_template_string("{{ recovery_widget('b1') }}")
    assert "recovery-widget--error" in html
    assert "starts_at has no time zone" in html


# -- many bookings at once ------------------------------------------------------------------


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_bookings_loader_loads_many_ids_in_one_call(app, host):
    for n in range(1, 4):
        naive(host, f"b{n}")
    calls = []

    @app.recovery.bookings_loader
    def load_many(ids):
        calls.append(ids)
        return [host.bookings[i] for i in ids if i in host.bookings] + [host.bookings["b1"]]  # b1 twice

    with app.app_context():
        found = app.recovery.load_bookings(["b3", "b1", "zzz", "b2", "b1", 7])
    assert calls == [["b3", "b1", "zzz", "b2", "7"]]
    assert list(found) == ["b3", "b1", "b2"]  # in the order asked, unknown ids absent
    assert host.loads == 0  # the per-id loader was not called
    assert found["b1"].starts_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # normalised


def test_bookings_loader_may_answer_a_mapping_and_only_asked_ids_are_kept(app, host):
    for n in range(1, 4):
        host.add_booking(f"b{n}")
    app.recovery.bookings_loader(lambda ids: {b.id: b for b in host.bookings.values()})
    with app.app_context():
        assert list(app.recovery.load_bookings(["b2"])) == ["b2"]
        assert app.recovery.load_bookings([]) == {}


def test_bookings_loader_yielding_something_else_is_a_clear_type_error(app, host):
    app.recovery.bookings_loader(lambda ids: [{"id": "b1"}])
    with app.app_context(), pytest.raises(TypeError, match="bookings loader must yield flask_recovery.Booking"):
        app.recovery.load_bookings(["b1"])


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_without_a_bookings_loader_each_id_goes_to_the_booking_loader(app, host):
    naive(host, "b1")
    host.add_booking("b2")
    with app.app_context():
        found = app.recovery.load_bookings(["b1", "zzz", "b2", "b1"])
    assert list(found) == ["b1", "b2"]
    assert host.loads == 3  # b1, zzz, b2: once each
    assert found["b1"].starts_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


# -- the bookings_between loader and Booking objects the host hands over --------------------


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_bookings_between_loader_is_normalised_under_both_names(app, host):
    naive(host)
    assert app.recovery.bookings_between_loader is None
    asked = []

    @app.recovery.bookings_between
    def between(start, end):
        asked.append((start, end))
        return list(host.bookings.values())

    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    with app.app_context():
        public = list(app.recovery.bookings_between_loader(start, end))
        listed = app.recovery.load_bookings_between(start, end)
        old_name = list(app.recovery._bookings_between(start, end))
    expected = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    for bookings in (public, listed, old_name):
        assert [b.starts_at for b in bookings] == [expected]
    assert asked == [(start, end)] * 3


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_sync_visits_from_a_naive_loader(app, host, runner):
    for n in range(3):
        naive(host, f"h{n}", starts_at=NOON + timedelta(days=n), client_id=f"c{n}")
    tz = ZoneInfo(MOSCOW)

    @app.recovery.bookings_between
    def between(start, end):  # a naive host compares in its own wall clock
        start, end = start.astimezone(tz).replace(tzinfo=None), end.astimezone(tz).replace(tzinfo=None)
        return [b for b in host.bookings.values() if start <= b.starts_at < end]

    period = ["--since", "2026-03-01", "--until", "2026-03-31"]
    result = runner.invoke(args=["recovery", "stats", *period, "--sync-visits", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "synced 3 bookings into recovery_visits." in result.output
    assert json.loads(result.output[result.output.index("{") :])["returns"]["visits_known"] == 3
    with app.app_context():
        visit = app.db.session.query(Visit).filter_by(booking_id="h0").one()
        assert visit.starts_at.astimezone(UTC) == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.config(RECOVERY_TIMEZONE=MOSCOW)
def test_naive_booking_objects_handed_to_flags_for_bookings(app, host):
    past = datetime.now().replace(microsecond=0) - timedelta(days=3)
    naive(host, "past", starts_at=past)
    upcoming = naive(host, "b1", starts_at=past + timedelta(days=5), status="booked")
    host.login("admin")
    client = app.test_client()
    recorded = client.post(
        "/recovery/api/bookings/past/incidents",
        json={"category": "late", "severity": "major", "description": "Master started 25 minutes late"},
    )
    assert recorded.status_code == 201
    with app.app_context():
        flags = app.recovery.flags_for_bookings([upcoming])
    assert [flag.type for flag in flags["b1"]] == ["vip"]


# -- the new fields and the config key -----------------------------------------------------------


def test_client_phone_and_staff_locale_are_accepted():
    positional = Booking("b1", "c1", "Anna", None, NOON, NOON, "s1", "Haircut", 1000, "booked", "center", "ru")
    assert positional.client_phone is None and positional.locale == "ru"
    booking = Booking("b1", "c1", "Anna", None, NOON, NOON, None, "Haircut", client_phone="  +7 900 123-45-67 ")
    assert booking.client_phone == "+7 900 123-45-67"
    assert Booking("b1", "c1", "Anna", None, NOON, NOON, None, "Haircut", client_phone="   ").client_phone is None
    with pytest.raises(ValueError, match="Booking.client_phone must be a string or None"):
        Booking("b1", "c1", "Anna", None, NOON, NOON, None, "Haircut", client_phone=79001234567)

    assert Staff("s1", "Olga", "admin").locale is None
    assert Staff("s1", "Olga", "admin", locale=" ru ").locale == "ru"
    assert Staff("s1", "Olga", "admin", "olga@salon.test", "north", "en").locale == "en"
    with pytest.raises(ValueError, match="Staff.locale must be a string or None"):
        Staff("s1", "Olga", "admin", locale=["ru"])


@pytest.mark.parametrize("value", ["loca", "LOCAL", None, True])
def test_a_bad_naive_datetimes_setting_fails_init_app_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match="RECOVERY_NAIVE_DATETIMES must be one of"):
        make_app(f"sqlite:///{tmp_path / 'bad.sqlite'}", {"RECOVERY_NAIVE_DATETIMES": value})


def test_the_default_is_local(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'default.sqlite'}")
    assert app.config["RECOVERY_NAIVE_DATETIMES"] == "local"
