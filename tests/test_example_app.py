"""The example salon site: what a newcomer sees first, on SQLite and PostgreSQL."""

import re

import pytest

from example_app import create_app, db, recovery


@pytest.fixture
def salon(db_url, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False})
    yield app
    with app.app_context():
        db.session.commit()  # the host's commit (the rules only flush)
        db.session.remove()
        recovery.drop_all()
        db.drop_all()
        db.engine.dispose()


def login(client, who):
    return client.post("/staff", data={"staff": who, "next": "/day"})


def test_day_list_and_checkout_with_the_widget(salon):
    client = salon.test_client()
    assert client.get("/").status_code in (302, 303)
    day = client.get("/day", headers={"Accept-Language": "en"})
    assert day.status_code == 200
    assert "Анна Смирнова" in day.text and "Emma Clarke" in day.text
    login(client, "irina")
    checkout = client.get("/bookings/8/checkout", headers={"Accept-Language": "en"})
    assert checkout.status_code == 200
    assert 'id="recovery-widget"' in checkout.text and "Record incident" in checkout.text
    response = client.post(
        "/recovery/bookings/8/incidents",
        data={
            "category": "late",
            "severity": "major",
            "description": "Started 25 minutes late",
            "next": "/bookings/8/checkout",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/bookings/8/checkout#recovery-widget"
    assert "Started 25 minutes late" in client.get("/bookings/8/checkout").text


def test_pages_in_russian_by_default(salon):
    client = salon.test_client()
    login(client, "irina")
    html = client.get("/bookings/8/checkout").text
    assert '<html lang="ru"' in html
    assert "Работа с жалобами" in html


def test_branch_admin_sees_no_other_branch(salon):
    client = salon.test_client()
    login(client, "pavel")
    html = client.get("/bookings/8/checkout").text
    assert "Record incident" not in html and "Записать" not in html
    assert client.get("/recovery/api/bookings/8").status_code == 404


def test_bad_input_gets_friendly_4xx(salon):
    client = salon.test_client()
    assert client.get("/day?date=2026-13-45").status_code == 400
    assert client.get("/bookings/99999/checkout").status_code == 404
    assert client.get("/bookings/abc/checkout").status_code == 404
    response = client.post("/lang", data={"lang": "en", "next": "//evil.example"})
    assert not re.match(r"^(https?:)?//", response.headers.get("Location", "/"))


def test_seed_command_resets_demo_data(salon):
    result = salon.test_cli_runner().invoke(args=["seed", "--reset-recovery"])
    assert result.exit_code == 0, result.output
    assert "Demo data ready" in result.output


def test_manager_pages_wear_the_salon_layout(salon):
    client = salon.test_client()
    login(client, "marina")
    day = client.get("/day", headers={"Accept-Language": "en"}).text
    assert 'href="/recovery/approvals"' in day and 'href="/recovery/budget"' in day
    queue = client.get("/recovery/approvals", headers={"Accept-Language": "ru"})
    assert queue.status_code == 200
    assert "Бархат" in queue.text and "Согласования" in queue.text
    login(client, "irina")
    assert 'href="/recovery/approvals"' not in client.get("/day").text


def _tomorrow(salon):
    from datetime import timedelta

    from example_app.helpers import salon_today

    with salon.app_context():
        return (salon_today() + timedelta(days=1)).isoformat()


def _badge_rows(html):
    """booking id -> the badge's flag type, for the rows of a day list that have a badge."""
    rows = re.findall(r'<tr data-booking-id="(\d+)"(.*?)</tr>', html, re.S)
    found = {booking_id: re.search(r'data-recovery-flag="(\w+)"', row) for booking_id, row in rows}
    return {booking_id: match.group(1) for booking_id, match in found.items() if match}


def test_the_flag_shows_on_her_next_booking_and_checkout_uses_it_up(salon):
    client = salon.test_client()
    login(client, "irina")
    client.post(
        "/recovery/bookings/8/incidents",
        data={"category": "late", "severity": "major", "description": "Started 25 minutes late"},
    )
    tomorrow = _tomorrow(salon)
    day = client.get(f"/day?date={tomorrow}", headers={"Accept-Language": "en"}).text
    assert day.count("<tr data-booking-id=") == 6
    assert _badge_rows(day) == {"18": "vip"}  # Анна tomorrow, nobody else
    assert "Started 25 minutes late" in day  # the reason, on hover and for screen readers
    assert _badge_rows(client.get("/day").text) == {}  # not on the visit where it went wrong
    checkout = client.get("/bookings/18/checkout", headers={"Accept-Language": "en"}).text
    assert "for this visit" in checkout and "Mark as seen" in checkout
    assert 'href="/recovery/clients/1?booking=18"' in checkout
    response = client.post("/bookings/18/complete", headers={"Accept-Language": "en"})
    assert response.status_code == 303
    page = client.get("/bookings/18/checkout", headers={"Accept-Language": "en"}).text
    assert "The note for this visit is done" in page
    assert _badge_rows(client.get(f"/day?date={tomorrow}").text) == {}


def test_online_booking_respects_a_managers_hold(salon):
    client = salon.test_client()
    tomorrow = _tomorrow(salon)
    form = {"client": "3", "service": "2", "master": "2", "day": tomorrow, "time": "18:15"}
    response = client.post("/book", data=form, headers={"Accept-Language": "en"})
    assert response.status_code == 303 and response.headers["Location"] == f"/day?date={tomorrow}"
    with salon.app_context():
        from flask_recovery.models import Visit

        assert db.session.query(Visit).filter_by(client_id="3", status="booked").count() == 1  # booking_created
    login(client, "marina")
    clients = client.get("/clients", headers={"Accept-Language": "en"}).text
    assert 'href="/recovery/clients/3?booking=' in clients
    response = client.post("/recovery/clients/3/hold", data={"reason": "Shouted at Дмитрий", "next": "/clients"})
    assert response.status_code == 303
    clients = client.get("/clients", headers={"Accept-Language": "en"}).text
    may_book = dict(re.findall(r'<tr data-client-id="(\d+)">.*?data-may-book="(\w+)"', clients, re.S))
    assert may_book["3"] == "false" and set(may_book.values()) == {"true", "false"}
    assert list(may_book.values()).count("false") == 1
    login(client, "")
    refused = client.post("/book", data={**form, "time": "19:15"}, headers={"Accept-Language": "en"})
    assert refused.status_code == 409
    assert "Please call us to book" in refused.text and "Shouted" not in refused.text
    bad = client.post("/book", data={**form, "client": "4", "day": "2001-01-01"}, headers={"Accept-Language": "en"})
    assert bad.status_code == 422 and "Choose a time in the future." in bad.text


@pytest.mark.parametrize("made_by", ["migrations", "create_all"])
def test_a_demo_database_from_an_earlier_version_still_opens(db_url, made_by):
    """A newcomer's salon database kept from before migration 0005 opens on the new version."""
    import sqlalchemy as sa

    from flask_recovery import migrate

    engine = sa.create_engine(db_url)
    migrate.upgrade(engine, "0004_flags_visits")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO recovery_visits (booking_id, client_id, starts_at, ends_at, status, created_at) "
                "VALUES ('old', 'c-old', :t, :t, 'completed', :t)"
            ),
            {"t": "2026-01-10 10:00:00+00:00"},
        )
        if made_by == "create_all":  # an older demo made its tables without migrations
            connection.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
    engine.dispose()
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False})
    try:
        with app.app_context():
            assert migrate.current_revision(db.engine) == migrate.head_revision()
            kept = db.session.execute(sa.text("SELECT count(*) FROM recovery_visits WHERE booking_id = 'old'")).scalar()
        # upgraded in place with its data; a database without a version table is made afresh
        assert kept == (1 if made_by == "migrations" else 0)
        client = app.test_client()
        login(client, "irina")
        assert client.get("/day").status_code == 200
        assert client.get("/bookings/8/checkout").status_code == 200
    finally:
        with app.app_context():
            db.session.commit()  # the host's commit (the rules only flush)
            db.session.remove()
            recovery.drop_all()
            db.drop_all()
            db.engine.dispose()
