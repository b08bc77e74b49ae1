"""The example salon site: what a newcomer sees first, on SQLite and PostgreSQL."""

import re

import pytest

from example_app import create_app, db, recovery


@pytest.fixture
def salon(db_url, tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False})
    yield app
    with app.app_context():
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
