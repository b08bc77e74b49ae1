"""CSRF: every form refuses a POST without its token, and the same POST with the token works.

The forms are found in ``app.url_map`` (every POST route outside the JSON API), so a new
form is covered the day it appears (and fails here until it has a row in the
authorization table, which says who may send it). The JSON API needs no token: it takes
``application/json`` only, which a cross-site HTML form cannot send; that is checked for
every API POST too.
"""

from __future__ import annotations

import re

import pytest

from .test_authz_matrix import ROLES, TABLE, World, log_in, snapshot

pytestmark = pytest.mark.config(WTF_CSRF_ENABLED=True)

API = "/recovery/api"


def post_routes(app, api: bool) -> list[tuple[str, str]]:
    routes = {
        (rule.endpoint, "POST")
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.endpoint.startswith("recovery_api.") == api
    }
    routes.discard(("recovery_api.not_found", "POST"))
    return sorted(routes)


def allowed_role(route) -> tuple[str, int]:
    """The first caller the authorization table lets through, and its status."""
    for role, status in zip(ROLES, TABLE[route].expected, strict=True):
        if status < 400:
            return role, status
    raise AssertionError(f"nobody may post {route}")


def token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


#: Every HTML form of the authorization table (which ``test_authz_matrix`` keeps complete).
FORMS = sorted(r for r in TABLE if r[1] == "POST" and not r[0].startswith("recovery_api."))


def test_every_form_is_checked(app):
    assert post_routes(app, api=False) == FORMS


@pytest.mark.parametrize("route", FORMS, ids=[e for e, _ in FORMS])
def test_a_form_without_its_token_is_refused_and_with_it_works(app, client, host, route):
    world = World(app, host)
    role, status = allowed_role(route)
    method, url, kwargs = TABLE[route].call(world)
    log_in(host, role)
    data = {k: v for k, v in kwargs["data"].items() if k != "List-Unsubscribe"}  # the browser form, not one-click

    before = snapshot(app)
    refused = client.post(url, data=data)
    assert refused.status_code == 400, (route, refused.status_code, refused.get_data(as_text=True)[:300])
    assert refused.mimetype == "text/html"
    assert re.search(r"expired|not sent from this site", refused.get_data(as_text=True)), route
    assert snapshot(app) == before, (route, "a POST without a token changed state")
    forged = client.post(url, data={**data, "csrf_token": "forged.token.value"})
    assert forged.status_code == 400 and snapshot(app) == before, route

    page = f"/recovery/bookings/{world.booking.id}" if host.staff else url.replace("/answer", "/answer/good")
    if route[0] == "recovery_answers.unsubscribe_confirm":
        page = url
    token = token_from(client.get(page).get_data(as_text=True))
    done = client.post(url, data={**data, "csrf_token": token})
    assert done.status_code == status, (route, done.status_code, done.get_data(as_text=True)[:300])
    assert snapshot(app) != before, (route, "the form with its token did nothing")


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", "note=x&kind=gift&amount=100"),
        ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--b--\r\n'),
        ("text/plain", '{"note": "x", "kind": "gift", "amount": 100}'),
    ],
    ids=["urlencoded", "multipart", "text-plain-json"],
)
def test_the_api_takes_json_only_so_a_cross_site_form_cannot_post(app, client, host, content_type, data):
    world = World(app, host)
    routes = post_routes(app, api=True)
    assert len(routes) >= 10
    for route in routes:
        role, _ = allowed_role(route)
        method, url, _kwargs = TABLE[route].call(world)
        log_in(host, role)
        before = snapshot(app)
        response = client.post(url, data=data, content_type=content_type)
        assert response.status_code == 415, (route, response.status_code)
        assert response.get_json()["error"]["code"] == "unsupported_media_type"
        assert snapshot(app) == before, route
