"""Open redirects: no ``next``-style parameter sends the browser to another site.

Every route of the app is tried (POST forms with ``next`` in the body, GET pages with
``?next=``), through the real views, with the classic payloads; a redirect must stay on
this site as a browser reads it (browsers drop tabs and line breaks and read ``\\`` as
``/``). The forms that honour ``next`` must still follow a good local one. The example
salon's own switchers are tried too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from example_app import create_app
from example_app import db as salon_db
from example_app import recovery as salon_recovery
from example_app.helpers import safe_next as salon_safe_next
from flask_recovery.views import safe_next

from .test_authz_matrix import ROLES, TABLE, World, log_in

PAYLOADS = [
    "//evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "http:///evil.example",
    "https://evil.example/recovery",
    "\t//evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "///evil.example",
    "////evil.example",
    " //evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "//evil.example%2F%2E%2E",
    "/\x00/evil.example",
    "\u3002//evil.example",
]
TRIED: list[str] = []


def browser_target(location: str) -> tuple[str, str]:
    """Where a browser goes for a ``Location`` header: (scheme, host) after its own clean-up."""
    cleaned = "".join(ch for ch in location if ch not in "\t\n\r").strip().replace("\\", "/")
    parts = urlsplit(cleaned)
    return parts.scheme, parts.netloc


def assert_stays_here(response, context) -> None:
    TRIED.append(str(context))
    location = response.headers.get("Location")
    if location is None:
        return
    scheme, netloc = browser_target(location)
    assert netloc in ("", "localhost"), ("open redirect", location, context)
    assert scheme in ("", "http"), ("open redirect", location, context)
    assert location.startswith("/") and not location.startswith("//"), (location, context)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_safe_next_refuses_the_classics(payload):
    assert safe_next(payload) is None
    assert salon_safe_next(payload) is None


def test_safe_next_keeps_a_local_path():
    for good in ("/recovery/bookings/b1", "/day?date=2026-01-02", "/recovery/clients/c1#flag-2"):
        assert safe_next(good) == good and salon_safe_next(good) == good


def allowed_role(cell) -> str:
    return next((role for role, status in zip(ROLES, cell.expected, strict=True) if status < 400), "manager")


def test_every_route_with_next_style_payloads(app, client, host):
    world = World(app, host)
    followed = []
    for route, cell in sorted(TABLE.items()):
        method, url, kwargs = cell.call(world)
        if method not in ("GET", "POST"):
            continue
        for payload in PAYLOADS + ["/recovery/budget?from=next"]:
            if method == "POST":
                method, url, kwargs = cell.call(world)  # a fresh object for every try
            log_in(host, allowed_role(cell))
            params = {name: payload for name in ("next", "return_to", "redirect", "back", "url")}
            if method == "GET":
                response = client.get(url, query_string=params)
            elif "json" in kwargs:
                response = client.post(url, json={**kwargs["json"]}, query_string=params)
            else:
                response = client.post(url, data={**kwargs.get("data", {}), **params}, query_string=params)
            response.close()
            if payload.startswith("/recovery/budget"):
                if response.headers.get("Location", "").startswith("/recovery/budget?from=next"):
                    followed.append(route[0])
                continue
            assert_stays_here(response, (route, payload))
    # the forms that take ``next`` still follow a good one: the refusals above were real checks
    assert {
        "recovery.record_incident",
        "recovery.resolve_incident",
        "recovery.reopen_incident",
        "recovery.grant_compensation",
        "recovery.approve_compensation",
        "recovery.reject_compensation",
        "recovery.acknowledge_flag",
        "recovery.lift_flag",
        "recovery.set_flag",
        "recovery.set_hold",
        "recovery.lift_hold",
    } <= set(followed), followed


@pytest.fixture
def salon(db_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "t", "WTF_CSRF_ENABLED": False})
    yield app
    with app.app_context():
        salon_db.session.remove()
        salon_recovery.drop_all()
        salon_db.drop_all()
        salon_db.engine.dispose()


def test_the_example_salons_switchers_refuse_them_too(salon):
    client = salon.test_client()
    for payload in PAYLOADS:
        for url, data in (("/lang", {"lang": "en"}), ("/staff", {"staff": "irina"})):
            response = client.post(url, data={**data, "next": payload})
            assert response.status_code == 303, (url, payload, response.status_code)
            assert_stays_here(response, (url, payload))
    good = client.post("/staff", data={"staff": "irina", "next": "/bookings/8/checkout"})
    assert good.headers["Location"] == "/bookings/8/checkout"
