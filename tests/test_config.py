"""Configuration: defaults, validation naming the bad key, one init per app, two apps."""

from datetime import timedelta

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import ConfigError, Recovery, UnsupportedDatabase

from .conftest import Host, make_app


def _init(tmp_path, **config):
    return make_app(f"sqlite:///{tmp_path / 'c.sqlite'}", config)


def test_defaults_are_set_without_overriding_host_values(tmp_path):
    app = _init(tmp_path, RECOVERY_CURRENCY="RUB")
    assert app.config["RECOVERY_CURRENCY"] == "RUB"
    assert app.config["RECOVERY_URL_PREFIX"] == "/recovery"
    assert app.config["RECOVERY_FOLLOWUP_DELAY"] == timedelta(hours=24)
    assert app.config["RECOVERY_FOLLOWUP_WINDOW"] == (10, 20)
    assert app.config["RECOVERY_AUTHORITY"]["admin"]["per_grant"] == 150000
    assert "recovery" in app.extensions


BAD_VALUES = [
    ("RECOVERY_URL_PREFIX", "recovery"),
    ("RECOVERY_URL_PREFIX", "/recovery/"),
    ("RECOVERY_CURRENCY", "rubles"),
    ("RECOVERY_TIMEZONE", "Mars/Olympus"),
    ("RECOVERY_TIMEZONE", 3),
    ("RECOVERY_LOCALES", "ru"),
    ("RECOVERY_LOCALES", []),
    ("RECOVERY_DEFAULT_LOCALE", "de"),
    ("RECOVERY_CATEGORIES", "late"),
    ("RECOVERY_CATEGORIES", []),
    ("RECOVERY_CATEGORIES", ["Late Start!"]),
    ("RECOVERY_PERMISSIONS", {"incident.explode": "*"}),
    ("RECOVERY_PERMISSIONS", {"incident.record": "admin"}),
    ("RECOVERY_AUTHORITY", {"admin": {"per_grant": -1}}),
    ("RECOVERY_AUTHORITY", {"admin": {"per_grant": 10.5}}),
    ("RECOVERY_AUTHORITY", {"admin": {"per_month": "lots"}}),
    ("RECOVERY_AUTHORITY", {"admin": {"kinds": ["cash"]}}),
    ("RECOVERY_AUTHORITY", {"admin": {"per_grant": 100, "limit": 5}}),
    ("RECOVERY_AUTHORITY", ["admin"]),
    ("RECOVERY_MATRIX", {"late": {"huge": ["gift"]}}),
    ("RECOVERY_MATRIX", {"late": {"minor": ["cash"]}}),
    ("RECOVERY_MONTHLY_BUDGET", -5),
    ("RECOVERY_FOLLOWUP_DELAY", 24),
    ("RECOVERY_FOLLOWUP_DELAY", timedelta(hours=-1)),
    ("RECOVERY_FOLLOWUP_WINDOW", (20, 10)),
    ("RECOVERY_FOLLOWUP_WINDOW", (0, 25)),
    ("RECOVERY_FOLLOWUP_WINDOW", "10-20"),
    ("RECOVERY_FOLLOWUP_ALL_VISITS", "yes"),
    ("RECOVERY_FOLLOWUP_MIN_INTERVAL", None),
    ("RECOVERY_FOLLOWUP_REMINDER_AFTER", 3),
    ("RECOVERY_VIP_DAYS", 0),
    ("RECOVERY_VIP_DAYS", "90"),
    ("RECOVERY_MANAGER_EMAILS", "boss@salon.test"),
    ("RECOVERY_MANAGER_EMAILS", ["not an address"]),
    ("RECOVERY_MAX_TEXT_LENGTH", 0),
    ("RECOVERY_BASE_URL", "salon.example.com"),
    ("RECOVERY_BASE_URL", "https://salon.example.com/"),
    ("RECOVERY_VOUCHER_DAYS", 0),
    ("RECOVERY_MAX_AMOUNT", -1),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_bad_config_fails_at_init_app_naming_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError) as raised:
        _init(tmp_path, **{key: value})
    assert key in str(raised.value)


def test_good_custom_config_is_accepted(tmp_path):
    app = _init(
        tmp_path,
        RECOVERY_URL_PREFIX="",
        RECOVERY_CURRENCY="RUB",
        RECOVERY_TIMEZONE="Europe/Moscow",
        RECOVERY_CATEGORIES={"wrong_color": {"en": "Wrong colour", "ru": "Не тот цвет"}, "late": "Late"},
        RECOVERY_FOLLOWUP_WINDOW=(0, 24),
        RECOVERY_FOLLOWUP_REMINDER_AFTER=None,
        RECOVERY_MANAGER_EMAILS=["boss@salon.test"],
        RECOVERY_AUTHORITY={"admin": {"per_grant": None, "per_month": 0, "kinds": "all"}},
    )
    assert app.url_map.bind("localhost").match("/bookings/b1")[0] == "recovery.booking"


def test_second_init_app_on_the_same_app_raises(tmp_path):
    app = _init(tmp_path)
    with pytest.raises(RuntimeError, match="already initialised"):
        app.recovery.init_app(app, db=app.db)


def test_init_app_without_sqlalchemy_says_so():
    app = Flask("no_db")
    with pytest.raises(RuntimeError, match="Flask-SQLAlchemy"):
        Recovery(app)


def test_db_is_found_on_the_app_when_not_passed(tmp_path):
    app = Flask("found_db")
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.sqlite'}", SECRET_KEY="k")
    db = SQLAlchemy(app)
    Recovery(app)
    assert app.extensions["recovery"].db is db


def test_two_apps_with_different_config_in_one_process(tmp_path):
    recovery = Recovery()
    apps = []
    for prefix, currency in (("/recovery", "EUR"), ("/desk", "RUB")):
        app = Flask(f"app{currency}")
        app.config.update(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / (currency + '.sqlite')}",
            SECRET_KEY="k",
            RECOVERY_URL_PREFIX=prefix,
            RECOVERY_CURRENCY=currency,
            WTF_CSRF_ENABLED=False,
        )
        db = SQLAlchemy(app)
        recovery.init_app(app, db=db)
        apps.append(app)
    host = Host()
    host.add_booking("b1")
    host.login("admin")
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: host.staff)
    for app in apps:
        with app.app_context():
            recovery.create_all()
    first, second = (a.test_client() for a in apps)
    assert (
        first.post(
            "/recovery/api/bookings/b1/incidents",
            json={"category": "late", "severity": "minor", "description": "10 min"},
        ).status_code
        == 201
    )
    assert second.get("/recovery/api/bookings/b1").status_code == 404
    record = second.get("/desk/api/bookings/b1").get_json()
    assert record["booking"]["currency"] == "RUB" and record["incidents"] == []
    record = first.get("/recovery/api/bookings/b1").get_json()
    assert record["booking"]["currency"] == "EUR" and len(record["incidents"]) == 1


def test_booking_times_must_be_datetimes():
    """A naive datetime is read per RECOVERY_NAIVE_DATETIMES later (test_loaders); a time that
    is no datetime at all is refused at once."""
    from datetime import datetime

    from flask_recovery import Booking

    with pytest.raises(ValueError, match="starts_at"):
        Booking("b", "c", "Anna", None, "2026-01-01 10:00", datetime(2026, 1, 1, 11), None, "Cut")


def test_a_database_other_than_postgresql_or_sqlite_is_refused_at_init_app(tmp_path):
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/x.db", SECRET_KEY="x")
    db = SQLAlchemy(app)
    with app.app_context():
        db.engine.dialect.name = "mysql"  # what a MySQL host's engine reports
    with pytest.raises(UnsupportedDatabase, match="PostgreSQL and SQLite.*'mysql'.*SQLALCHEMY_DATABASE_URI"):
        Recovery(app, db=db)
    assert "recovery" not in app.extensions


def test_the_rules_that_speak_sql_dialects_refuse_an_unsupported_one_by_name(app):
    from flask_recovery.domain import stats, visits

    with app.app_context():
        session = app.db.session
        session.get_bind().dialect.name = "oracle"
        try:
            period = stats.make_period(None, None)
            with pytest.raises(UnsupportedDatabase, match="'oracle'"):
                stats.journal(session, period)
            with pytest.raises(UnsupportedDatabase, match="'oracle'"):
                visits.sync_visits(session, lambda start, end: [], period.start, period.end)
        finally:
            del session.get_bind().dialect.name


def test_each_app_gets_its_own_copy_of_the_mutable_defaults():
    """Changing one app's authority, permissions or matrix changes no other app's, nor the default."""
    from flask_recovery import config as cfg

    first, second = Flask("first"), Flask("second")
    cfg.apply_defaults(first.config)
    cfg.apply_defaults(second.config)
    first.config["RECOVERY_AUTHORITY"]["admin"]["per_grant"] = 1
    first.config["RECOVERY_PERMISSIONS"]["incident.record"] = ["nobody"]
    first.config["RECOVERY_MATRIX"].clear()
    assert second.config["RECOVERY_AUTHORITY"]["admin"]["per_grant"] == cfg.DEFAULTS["AUTHORITY"]["admin"]["per_grant"]
    assert cfg.DEFAULTS["AUTHORITY"]["admin"]["per_grant"] != 1
    assert second.config["RECOVERY_PERMISSIONS"]["incident.record"] == cfg.DEFAULTS["PERMISSIONS"]["incident.record"]
    assert second.config["RECOVERY_MATRIX"] and cfg.DEFAULTS["MATRIX"]
