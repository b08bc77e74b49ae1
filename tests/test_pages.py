"""Staff pages and the checkout widget: what the admin at the desk sees and does."""

import re

import pytest
from flask import render_template_string
from flask_babel import force_locale

from flask_recovery.i18n import gettext
from flask_recovery.models import AuditEntry, Incident

PAGE = "/recovery/bookings/b1"
FORM = {
    "category": "result",
    "severity": "major",
    "description": "Colour came out orange",
    "corrective_action": "Colour tests on a strand first",
}


def csrf_token(html):
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def test_booking_page_shows_form_scripts_and_history(client, host, booking):
    host.login("admin")
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.text
    assert '<html lang="en">' in html
    assert 'for="recovery-b1-category"' in html and 'id="recovery-b1-category"' in html
    assert 'for="recovery-b1-description"' in html and "<legend>" in html
    assert "Record incident" in html
    assert 'data-category="late"' in html and 'data-category="client_conduct"' in html
    assert "Nothing has been recorded on this booking yet." in html
    assert "€1,500.00" in html


def test_chosen_category_opens_its_script_without_javascript(client, host, booking):
    host.login("admin")
    html = client.get(PAGE + "?category=late").text
    assert re.search(r'data-category="late"\s+open', html)
    assert not re.search(r'data-category="result"\s+open', html)
    assert '<option selected value="late">' in html


def test_recording_through_the_form_lists_the_incident(client, host, booking, session, signal_log):
    host.login("admin")
    response = client.post(PAGE + "/incidents", data=FORM)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(PAGE + "#recovery-widget")
    html = client.get(PAGE).text
    assert "Colour came out orange" in html
    assert "Result not as agreed" in html
    assert "Incident recorded" in html
    assert "Mark resolved" in html
    assert session.query(Incident).count() == 1
    assert [name for name, _ in signal_log] == ["incident_recorded", "client_flagged"]


def test_form_errors_are_shown_and_nothing_is_recorded(client, host, booking, session):
    """A POST without ``next`` (a script): the booking page itself, 422, every mistake at once."""
    host.login("admin")
    response = client.post(PAGE + "/incidents", data={**FORM, "description": "", "category": "weather"})
    assert response.status_code == 422
    html = response.text
    assert "Choose one of the situations in the list." in html and "Describe what happened." in html
    # each field names its own error text (WTForms writes the attributes in order)
    assert re.search(
        r'aria-describedby="recovery-b1-category-error" aria-invalid="true"[^>]*id="recovery-b1-category"', html
    )
    assert re.search(
        r'aria-describedby="recovery-b1-description-error" aria-invalid="true"[^>]*id="recovery-b1-description"', html
    )
    assert 'id="recovery-b1-category-error"' in html and 'id="recovery-b1-description-error"' in html
    assert session.query(Incident).count() == 0
    response = client.post(PAGE + "/incidents", data={**FORM, "description": " "})
    assert response.status_code == 422 and "Describe what happened." in response.text
    # what the admin typed is kept in the form, which comes back to the booking page
    assert "Colour tests on a strand first" in response.text
    assert 'name="next" type="hidden" value="/recovery/bookings/b1"' in response.text


def test_script_typed_into_the_description_comes_back_as_text(client, host, booking):
    host.login("admin")
    evil = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
    client.post(PAGE + "/incidents", data={**FORM, "description": evil, "corrective_action": evil})
    html = client.get(PAGE).text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_resolve_and_reopen_from_the_page(client, host, booking, session):
    host.login("admin")
    client.post(PAGE + "/incidents", data=FORM)
    incident = session.query(Incident).one()
    response = client.post(f"/recovery/incidents/{incident.id}/resolve", data={"note": "Redo on Friday", "next": PAGE})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{PAGE}#incident-{incident.id}")
    html = client.get(PAGE).text
    assert "Case marked resolved." in html and "Reopen the case" in html
    client.post(f"/recovery/incidents/{incident.id}/reopen", data={})
    assert "Reopened" in client.get(PAGE).text
    conflict = client.post(f"/recovery/incidents/{incident.id}/reopen", data={})
    assert conflict.status_code == 409 and "Someone has just changed this case" in conflict.text


def test_master_records_but_does_not_resolve(client, host, booking, session):
    host.login("master")
    assert client.post(PAGE + "/incidents", data=FORM).status_code == 303
    html = client.get(PAGE).text
    assert "Mark resolved" not in html
    incident = session.query(Incident).one()
    refused = client.post(f"/recovery/incidents/{incident.id}/resolve", data={})
    assert refused.status_code == 403 and "Not allowed" in refused.text


def test_pages_refuse_no_staff_unknown_booking_and_other_location(client, host, booking):
    host.login(None)
    assert client.get(PAGE).status_code == 401
    assert client.post(PAGE + "/incidents", data=FORM).status_code == 401
    host.login("admin")
    missing = client.get("/recovery/bookings/nope")
    assert missing.status_code == 404 and "No such booking." in missing.text
    host.login("north_admin")
    assert client.get(PAGE).status_code == 404
    assert client.post(PAGE + "/incidents", data=FORM).status_code == 404
    assert client.post("/recovery/incidents/abc/resolve", data={}).status_code == 404


def test_widget_in_a_host_template(app, host, booking):
    host.login("admin")
    with app.test_request_context("/desk/checkout/b1"):
        html = render_template_string("<main>{{ recovery_widget('b1') }}</main>")
    assert 'id="recovery-widget"' in html
    assert 'name="next" type="hidden" value="/desk/checkout/b1"' in html
    assert 'id="next"' not in html and 'id="category"' not in html
    assert 'action="/recovery/bookings/b1/incidents"' in html
    assert "Open the full booking page" in html
    with app.test_request_context("/desk"):
        host.login(None)
        assert render_template_string("{{ recovery_widget('b1') }}") == ""
        host.login("admin")
        assert "No such booking." in render_template_string("{{ recovery_widget('zzz') }}")


def test_widget_post_returns_to_the_host_page(client, host, booking):
    host.login("admin")
    response = client.post(PAGE + "/incidents", data={**FORM, "next": "/desk/checkout/b1?day=2026-11-22"})
    assert response.headers["Location"] == "/desk/checkout/b1?day=2026-11-22#recovery-widget"


OPEN_REDIRECTS = [
    "//evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "http:///evil.example",
    "https://evil.example/",
    "\t//evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "evil.example",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_next_refuses_open_redirects(client, host, booking, target):
    host.login("admin")
    response = client.post(PAGE + "/incidents", data={**FORM, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE + "#recovery-widget"


@pytest.mark.config(WTF_CSRF_ENABLED=True)
def test_csrf_is_enforced_on_every_form(client, host, booking, session):
    host.login("admin")
    refused = client.post(PAGE + "/incidents", data=FORM)
    assert refused.status_code == 400
    assert "The form has expired" in refused.text
    assert session.query(Incident).count() == 0
    wrong = client.post(PAGE + "/incidents", data={**FORM, "csrf_token": "forged"})
    assert wrong.status_code == 400 and session.query(Incident).count() == 0

    token = csrf_token(client.get(PAGE).text)
    assert client.post(PAGE + "/incidents", data={**FORM, "csrf_token": token}).status_code == 303
    incident = session.query(Incident).one()
    assert client.post(f"/recovery/incidents/{incident.id}/resolve", data={}).status_code == 400
    session.expire_all()
    assert session.query(Incident).one().status == "open"
    token = csrf_token(client.get(PAGE).text)
    assert client.post(f"/recovery/incidents/{incident.id}/resolve", data={"csrf_token": token}).status_code == 303
    session.expire_all()
    assert session.query(Incident).one().status == "resolved"
    assert [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)] == [
        "incident.recorded",
        "flag.set",
        "incident.resolved",
    ]


def test_get_never_changes_state(client, host, booking, session):
    host.login("admin")
    for url in (PAGE + "/incidents", "/recovery/incidents/1/resolve", "/recovery/incidents/1/reopen"):
        assert client.get(url).status_code == 405
    assert session.query(AuditEntry).count() == 0


def test_page_in_russian(client, host, booking, app):
    host.login("admin")
    html = client.get(PAGE, headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}).text
    assert '<html lang="ru">' in html
    with app.test_request_context(), force_locale("ru"):
        title = gettext("Service recovery")
        button = gettext("Record incident")
        late = gettext("Late start")
    assert title != "Service recovery" and title in html
    assert button in html and late in html
    assert "Record incident" not in html
    assert '<html lang="en">' in client.get(PAGE + "?lang=en", headers={"Accept-Language": "ru"}).text


def test_host_can_replace_the_base_template(tmp_path, host, booking):
    from .conftest import make_app

    templates = tmp_path / "templates" / "recovery"
    templates.mkdir(parents=True)
    (templates / "base.html").write_text(
        "<html><body><header>Velvet salon header</header>{% block content %}{% endblock %}</body></html>"
    )
    app = make_app(f"sqlite:///{tmp_path / 'o.sqlite'}", host=host)
    app.template_folder = str(tmp_path / "templates")
    with app.app_context():
        app.recovery.create_all()
    host.login("admin")
    html = app.test_client().get(PAGE).text
    assert "Velvet salon header" in html and "Record incident" in html


@pytest.mark.config(RECOVERY_CATEGORIES={"wrong_color": {"en": "Wrong colour", "ru": "Не тот цвет"}})
def test_host_categories_replace_the_catalogue(client, host, booking):
    host.login("admin")
    html = client.get(PAGE).text
    assert "Wrong colour" in html and "Late start" not in html
    assert "Не тот цвет" in client.get(PAGE, headers={"Accept-Language": "ru"}).text
    assert client.post(PAGE + "/incidents", data={**FORM, "category": "wrong_color"}).status_code == 303
    assert client.post(PAGE + "/incidents", data={**FORM, "category": "late"}).status_code == 422


def test_global_csrfprotect_guards_pages_but_not_the_json_api(tmp_path, host, booking):
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_wtf.csrf import CSRFProtect

    from flask_recovery import Recovery

    app = Flask("csrf_host")
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'g.sqlite'}")
    CSRFProtect(app)
    db = SQLAlchemy(app)
    recovery = Recovery(app, db=db)
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: host.staff)
    with app.app_context():
        recovery.create_all()
    host.login("admin")
    client = app.test_client()
    assert client.post(PAGE + "/incidents", data=FORM).status_code == 400
    api = client.post(
        "/recovery/api/bookings/b1/incidents", json={"category": "late", "severity": "minor", "description": "late"}
    )
    assert api.status_code == 201


def test_widget_assets_are_served(client, host, booking):
    host.login("admin")
    html = client.get(PAGE).text
    for asset in re.findall(r'(?:href|src)="(/recovery/static/[^"]+)"', html):
        with client.get(asset) as response:  # a file response: close it
            assert response.status_code == 200, asset
            assert response.data
    assert "/recovery/static/recovery.css" in html and "/recovery/static/recovery.js" in html
