"""The client's history page and the flag forms: what staff see, who may act, and every refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from flask_recovery import domain
from flask_recovery.domain import flags
from flask_recovery.models import AuditEntry, BookingHold, Flag, FollowUp

PAGE = "/recovery/clients/c1"


def when(days: float) -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    return {"starts_at": now + timedelta(days=days), "ends_at": now + timedelta(days=days, hours=1)}


def record(app, host, booking, who="admin", **fields):
    values = dict(category="late", severity="major", description="Master started 25 minutes late")
    values.update(fields)
    with app.app_context():
        incident_id = domain.record_incident(app.db.session, booking, host.login(who), **values).id
        app.db.session.commit()  # the rules flush; the caller commits
        return incident_id


def csrf_token(html):
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def visits_on_page(html):
    return re.findall(r'<li class="recovery-visit" id="visit-[^"]+" data-booking-id="([^"]+)"', html)


@pytest.fixture
def history(app, host, session):
    """Anna's history: a plain visit, a late start with a voucher, a result with a redo and an answer."""
    host.add_booking("v-old", **when(-60), status="completed")
    old = host.add_booking("v-late", **when(-30))
    recent = host.add_booking("v-result", **when(-2))
    later = host.add_booking("v-next", **when(5), status="booked")
    app.recovery.booking_created("v-old")
    session.commit()
    late = record(app, host, old, now=old.ends_at + timedelta(minutes=30))
    domain.grant_compensation(session, late, host.bookings.get, host.login("admin"), kind="discount", amount=50000)
    app.recovery.visit_completed("v-result")  # uses up the late start's flag
    session.commit()
    result = record(
        app,
        host,
        recent,
        category="result",
        description="Colour came out orange",
        now=recent.ends_at + timedelta(hours=1),
    )
    domain.grant_compensation(session, result, host.bookings.get, host.login("admin"), kind="redo")
    session.add(
        FollowUp(
            booking_id="v-result",
            client_id="c1",
            incident_id=result,
            location="center",
            kind="checkin",
            status="sent",
            due_at=datetime.now(UTC),
            sent_at=datetime.now(UTC),
            answer="good",
            comment="Thank you, the redo is lovely",
        )
    )
    session.commit()
    return later


def test_the_history_newest_first_with_remedies_vouchers_answers_and_flags(client, host, session, history):
    host.login("master")
    response = client.get(PAGE + "?booking=v-next")
    assert response.status_code == 200
    html = response.text
    assert 'Client history: <span class="recovery-client-name">Anna Smirnova</span>' in html
    assert visits_on_page(html) == ["v-result", "v-late", "v-old"]
    assert "Colour came out orange" in html and "Master started 25 minutes late" in html
    voucher = session.query(domain.compensations.Compensation).filter_by(kind="discount").one().voucher_code
    assert voucher in html and "Free redo or another master" in html
    assert "the client answered: all good" in html and "Thank you, the redo is lovely" in html
    # the active flag (from the colour) with who set it and why; the used one in the history
    active = re.search(r'<li class="recovery-flag recovery-flag-vip" id="flag-(\d+)".*?</li>', html, re.S).group(0)
    assert "Extra attention" in active and "Result not as agreed (major): Colour came out orange" in active
    assert "Given: a free redo." in active and "Set by Irina at" in active
    assert "Mark as seen" in active and "Lift the flag" not in active  # a master may not lift
    used = re.search(r'<li class="recovery-flag recovery-flag-past"[^>]*data-state="used".*?</li>', html, re.S)
    assert used and "used up at" in used.group(0) and "booking v-result" in used.group(0)
    assert "Extra attention flag used up on this visit." in html
    assert "The client may book online." in html


def test_reachable_from_the_widget_and_the_badge(client, host, history):
    host.login("admin")
    widget = client.get("/recovery/bookings/v-next").text
    assert 'href="/recovery/clients/c1?booking=v-next">Client history</a>' in widget
    assert 'data-recovery-flag="vip"' in widget and "for this visit" in widget


def test_conduct_notes_only_for_roles_with_conduct_view(app, client, host, booking):
    host.add_booking("b2", **when(3), status="booked")
    record(app, host, booking, category="client_conduct", severity="critical", description="Called Olga names")
    host.login("master")
    html = client.get(PAGE).text
    assert "Called Olga names" not in html
    assert "A conduct note is recorded. Only managers can read it." in html
    assert str(flags.CONDUCT_NOTICE) in html
    host.login("manager")
    html = client.get(PAGE).text
    assert "Called Olga names" in html and "Conduct warning: abuse of staff on the client" in html


def test_branch_staff_see_their_branch_only(app, client, host, booking):
    record(app, host, booking)  # centre
    host.add_booking("n1", location="north", **when(2), status="booked")
    host.login("north_admin")
    assert client.get(PAGE).status_code == 404  # nothing of hers in the north...
    html = client.get(PAGE + "?booking=n1").text  # ...unless she is booked there
    assert visits_on_page(html) == []  # the centre's visit is not shown
    assert 'class="recovery-incident' not in html  # nor its incident
    assert 'data-recovery-flag="vip"' in html  # but the active flag follows her to every desk
    assert client.get(PAGE + "?booking=b1").status_code == 404  # a centre booking does not help


@pytest.mark.config(RECOVERY_PERMISSIONS={"client.view": ["admin", "manager"]})
def test_who_may_open_it(client, host, booking, app):
    record(app, host, booking)
    host.login(None)
    assert client.get(PAGE).status_code == 401
    host.login("master")
    response = client.get(PAGE)
    assert response.status_code == 403 and "Not allowed" in response.text
    host.login("admin")
    assert client.get("/recovery/clients/nobody").status_code == 404
    assert client.get("/recovery/clients/" + "x" * 65).status_code == 404
    assert client.get(PAGE).status_code == 200


def test_acknowledge_from_the_widget_goes_back_to_the_host_page(app, client, host, session, history):
    flag = session.query(Flag).filter_by(status="active").one()
    host.login("master")
    response = client.post(
        f"/recovery/flags/{flag.id}/acknowledge",
        data={"note": "Seen, compliment offered", "booking_id": "v-next", "next": "/salon/checkout/v-next"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/salon/checkout/v-next#recovery-widget"
    html = client.get("/recovery/bookings/v-next").text
    assert "Seen by Olga at" in html and "Seen, compliment offered" in html and "Mark as seen" not in html
    entry = session.query(AuditEntry).filter_by(action="flag.acknowledged").one()
    assert entry.booking_id == "v-next"
    again = client.post(f"/recovery/flags/{flag.id}/acknowledge", data={})
    assert again.status_code == 409 and "already marked this flag as seen" in again.text


def test_an_outside_next_is_ignored(client, host, session, history):
    flag = session.query(Flag).filter_by(status="active").one()
    host.login("admin")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        session.execute(Flag.__table__.update().values(acknowledged_at=None))
        session.commit()
        response = client.post(f"/recovery/flags/{flag.id}/acknowledge", data={"next": evil})
        assert response.status_code == 303
        assert response.headers["Location"] == f"{PAGE}#flag-{flag.id}"


def test_lift_set_and_hold_forms(client, host, session, history, app):
    flag = session.query(Flag).filter_by(status="active").one()
    host.login("admin")
    assert client.post(f"/recovery/flags/{flag.id}/lift", data={"reason": "x"}).status_code == 403
    assert client.post(f"{PAGE}/hold", data={"reason": "x"}).status_code == 403
    host.login("manager")
    html = client.get(PAGE).text
    assert "Lift the flag" in html and "Flag the client by hand" in html and "Pause online booking" in html

    # a missing reason: back to the page it came from, the error beside the field, shown once
    response = client.post(f"/recovery/flags/{flag.id}/lift", data={"reason": " ", "next": PAGE})
    assert response.status_code == 303 and response.headers["Location"] == f"{PAGE}#flag-{flag.id}"
    html = client.get(PAGE).text
    assert re.search(rf'id="lift-reason-{flag.id}"[^>]*aria-invalid="true"', html)
    assert f'id="lift-error-{flag.id}"' in html and "Give a reason: a colleague will read it." in html
    assert "The flag is not lifted yet" in html
    assert "Give a reason" not in client.get(PAGE).text
    # without a next (a script): the page itself, 422
    response = client.post(f"/recovery/flags/{flag.id}/lift", data={"reason": " "})
    assert response.status_code == 422 and f'id="lift-error-{flag.id}"' in response.text

    response = client.post(f"/recovery/flags/{flag.id}/lift", data={"reason": "She asked us not to", "next": PAGE})
    assert response.status_code == 303 and response.headers["Location"] == f"{PAGE}#flag-{flag.id}"
    html = client.get(PAGE).text
    assert "Flag lifted." in html and "lifted by s-manager" in html and "She asked us not to" in html

    response = client.post(f"{PAGE}/flags", data={"type": "conduct", "reason": ""})
    assert response.status_code == 422 and 'id="flag-error"' in response.text
    assert 'id="flag-type-conduct" name="type" value="conduct" checked' in response.text
    response = client.post(f"{PAGE}/flags", data={"type": "conduct", "reason": "Rude to the admin on the phone"})
    assert response.status_code == 303
    assert session.query(Flag).filter_by(source="manual").one().type == "conduct"

    response = client.post(f"{PAGE}/hold", data={"reason": "Threatened Olga; take bookings by phone"})
    assert response.status_code == 303 and response.headers["Location"] == f"{PAGE}#recovery-hold"
    with app.app_context():
        assert not app.recovery.may_book("c1")
    html = client.get(PAGE).text
    assert "Paused by a manager: the client books by phone." in html and "Threatened Olga" in html
    assert client.post(f"{PAGE}/hold", data={"reason": "again"}).status_code == 409
    assert client.post(f"{PAGE}/hold/lift", data={"reason": ""}).status_code == 422
    assert client.post(f"{PAGE}/hold/lift", data={"reason": "Apologised"}).status_code == 303
    with app.app_context():
        assert app.recovery.may_book("c1")
    assert session.query(BookingHold).one().lift_reason == "Apologised"


def test_nothing_changes_on_get(client, host, session, history):
    flag = session.query(Flag).filter_by(status="active").one()
    host.login("manager")
    before = session.query(AuditEntry).count()
    for url in (
        f"/recovery/flags/{flag.id}/acknowledge",
        f"/recovery/flags/{flag.id}/lift",
        f"{PAGE}/flags",
        f"{PAGE}/hold",
        f"{PAGE}/hold/lift",
    ):
        assert client.get(url).status_code == 405, url
    assert session.query(AuditEntry).count() == before


def test_unknown_flag_and_client_are_404(client, host, history):
    host.login("manager")
    for url in ("/recovery/flags/999/acknowledge", "/recovery/flags/abc/lift", "/recovery/flags/99999999999/lift"):
        assert client.post(url, data={"reason": "x"}).status_code == 404, url
    assert client.post("/recovery/clients/nobody/flags", data={"type": "vip", "reason": "x"}).status_code == 404
    assert client.post("/recovery/clients/nobody/hold", data={"reason": "x"}).status_code == 404


@pytest.mark.config(WTF_CSRF_ENABLED=True)
def test_every_form_needs_its_csrf_token(client, host, session, history):
    flag = session.query(Flag).filter_by(status="active").one()
    host.login("manager")
    page = client.get(PAGE).text
    assert page.count('name="csrf_token"') >= 4  # seen, lift, set, hold
    assert 'id="csrf_token"' not in page  # no duplicate ids on a page of many forms
    for url, data in [
        (f"/recovery/flags/{flag.id}/acknowledge", {"note": "x"}),
        (f"/recovery/flags/{flag.id}/lift", {"reason": "x"}),
        (f"{PAGE}/flags", {"type": "vip", "reason": "x"}),
        (f"{PAGE}/hold", {"reason": "x"}),
    ]:
        response = client.post(url, data=data)
        assert response.status_code == 400, url
        assert "The form has expired" in response.text
    assert session.query(Flag).filter_by(status="active").one().acknowledged_at is None
    token = csrf_token(page)
    response = client.post(f"/recovery/flags/{flag.id}/acknowledge", data={"csrf_token": token, "note": "Seen"})
    assert response.status_code == 303


def test_the_page_is_labelled_for_assistive_technology(client, host, history):
    host.login("manager")
    html = client.get(PAGE).text
    for field_id in re.findall(r'<textarea id="([^"]+)"', html):
        assert f'<label for="{field_id}">' in html, field_id
    assert '<html lang="en">' in html and "<h1>" in html
    assert html.count("<h2 ") >= 3
