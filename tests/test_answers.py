"""The client's pages behind the mail's links: answer once, unsubscribe, friendly refusals."""

from __future__ import annotations

import re
import threading
import time

import itsdangerous
import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from flask_recovery import Recovery, tokens
from flask_recovery.models import AuditEntry, FollowUp, Incident, Notification, Unsubscribe, utcnow

from .test_followup_mail import MAIL, make_followup

CSRF_ON = {"WTF_CSRF_ENABLED": True}


def answer_url(followup_id: int, choice: str | None = None) -> str:
    token = tokens.make_token("answer", followup_id)
    return f"/recovery/followups/{token}/answer" + (f"/{choice}" if choice else "")


def unsubscribe_url(followup_id: int) -> str:
    return f"/recovery/followups/{tokens.make_token('unsubscribe', followup_id)}/unsubscribe"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def actions(session) -> list[tuple[str, str | None]]:
    session.expire_all()
    return [(e.action, e.actor_id) for e in session.query(AuditEntry).order_by(AuditEntry.id)]


def test_opening_the_link_changes_nothing_and_asks_for_one_press(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="ru")
    before = actions(session)
    response = client.get(answer_url(followup.id, "not_right"))
    assert response.status_code == 200
    page = response.text
    assert '<html lang="ru">' in page and "Ваш ответ" in page and "Отправить ответ" in page
    assert re.search(r'<input checked id="choice-1" name="choice" type="radio" value="not_right">', page)
    assert 'method="post"' in page and "<textarea" in page
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None
    assert session.get(Incident, incident.id).status == "resolved"
    assert actions(session) == before


def test_all_good_closes_the_case(client, session, host, signal_log):
    booking, incident, followup = make_followup(session, host, locale="en")
    response = client.post(answer_url(followup.id), data={"choice": "good", "comment": "Lovely, thank you"})
    assert response.status_code == 200
    assert "We are glad everything is all right." in response.text
    session.expire_all()
    row = session.get(FollowUp, followup.id)
    assert (row.answer, row.comment) == ("good", "Lovely, thank you") and row.answered_at is not None
    case = session.get(Incident, incident.id)
    assert case.status == "closed" and case.closed_at is not None
    assert actions(session)[-2:] == [("incident.closed", None), ("feedback.good", None)]
    assert session.query(Notification).count() == 0
    received = [kwargs for name, kwargs in signal_log if name == "feedback_received"]
    assert len(received) == 1 and received[0]["answer"] == "good" and received[0]["followup"].id == followup.id


@pytest.mark.config(**MAIL, RECOVERY_MANAGER_EMAILS=["boss@salon.test"])
def test_still_not_right_reopens_alerts_the_managers_and_shows_on_the_booking(
    app, client, session, host, runner, smtp_server
):
    from .test_notifications import point_mail_at

    booking, incident, followup = make_followup(session, host, locale="ru")
    _, _, reminder = make_followup(session, host, incident=False, kind="reminder", status="scheduled")
    comment = "The fringe is still uneven <b>here</b>"
    response = client.post(answer_url(followup.id), data={"choice": "not_right", "comment": comment})
    assert response.status_code == 200
    assert "Управляющий уже знает" in response.text and '<html lang="ru">' in response.text
    session.expire_all()
    case = session.get(Incident, incident.id)
    assert case.status == "reopened" and case.reopen_count == 1 and case.reopened_at is not None
    (note,) = session.query(Notification).all()
    assert (note.kind, note.subject_type, note.subject_id, note.status) == (
        "unhappy_answer",
        "followup",
        str(followup.id),
        "pending",
    )
    cancelled = session.get(FollowUp, reminder.id)
    assert (cancelled.status, cancelled.last_error) == ("cancelled", "answered")
    audit = session.query(AuditEntry).filter(AuditEntry.action == "feedback.not_right").one()
    assert comment not in str(audit.data) and audit.data["comment"] is True  # no free text in the audit

    host.login("manager")
    record = client.get(f"/recovery/api/bookings/{booking.id}").get_json()
    assert record["incidents"][0]["status"] == "reopened"
    assert "feedback.not_right" in [entry["action"] for entry in record["history"]]

    point_mail_at(app, smtp_server.port)
    result = runner.invoke(args=["recovery", "send-notifications"])
    assert "sent 1" in result.output, result.output
    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    (mail,) = smtp_server.messages
    assert mail["To"] == "boss@salon.test"
    assert mail["Subject"] == f"Still not right: Анна Смирнова, booking {booking.id}"
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert comment in text and "&lt;b&gt;here&lt;/b&gt;" in html and "<b>here</b>" not in html
    assert f"https://salon.example.com/recovery/bookings/{booking.id}" in text


def test_an_answer_without_a_case_still_reaches_the_managers(client, session, host):
    booking, _, followup = make_followup(session, host, incident=False)
    assert client.post(answer_url(followup.id), data={"choice": "not_right"}).status_code == 200
    session.expire_all()
    assert session.query(Notification).one().kind == "unhappy_answer"
    assert session.get(FollowUp, followup.id).comment is None


def test_all_good_on_a_case_staff_have_not_resolved_leaves_it_open(client, session, host):
    booking, incident, followup = make_followup(session, host, resolve=False)
    assert client.post(answer_url(followup.id), data={"choice": "good"}).status_code == 200
    session.expire_all()
    assert session.get(Incident, incident.id).status == "open"
    assert session.get(FollowUp, followup.id).answer == "good"


def test_a_used_link_gets_a_friendly_409(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    assert client.post(answer_url(followup.id), data={"choice": "good"}).status_code == 200
    again = client.post(answer_url(followup.id), data={"choice": "not_right"})
    assert again.status_code == 409 and "You have already answered" in again.text
    reopened = client.get(answer_url(followup.id, "not_right"))
    assert reopened.status_code == 409
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer == "good"
    assert session.get(Incident, incident.id).status == "closed"
    assert session.query(Notification).count() == 0


def test_the_reminders_link_is_used_up_by_the_first_answer(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    _, _, reminder = make_followup(session, host, incident=False, kind="reminder", locale="en")
    assert client.post(answer_url(reminder.id), data={"choice": "good"}).status_code == 200
    assert client.get(answer_url(followup.id, "good")).status_code == 409
    assert client.post(answer_url(followup.id), data={"choice": "not_right"}).status_code == 409


def test_a_voided_link_gets_a_friendly_409(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    followup.voided_at = utcnow()
    session.commit()
    response = client.get(answer_url(followup.id, "good"))
    assert response.status_code == 409 and "This link is no longer valid" in response.text
    assert client.post(unsubscribe_url(followup.id), data={"List-Unsubscribe": "One-Click"}).status_code == 409


def test_a_tampered_link_gets_a_friendly_400(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    token = tokens.make_token("answer", followup.id)
    payload, stamp, signature = token.split(".")
    forged = tokens.serializer("answer").dump_payload(followup.id + 1).decode()
    for bad in (
        f"{payload}.{stamp}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        f"{forged}.{stamp}.{signature}",
        "not-a-token",
    ):
        response = client.get(f"/recovery/followups/{bad}/answer/good", headers={"Accept-Language": "en"})
        assert response.status_code == 400, bad
        assert "This link does not work" in response.text
    assert (
        client.post(f"/recovery/followups/{forged}.{stamp}.{signature}/answer", data={"choice": "good"}).status_code
        == 400
    )
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None


def test_the_tampered_page_speaks_the_browsers_language(client, session):
    response = client.get("/recovery/followups/nonsense/answer/good", headers={"Accept-Language": "ru"})
    assert response.status_code == 400 and "Эта ссылка не работает" in response.text


def test_an_unknown_choice_is_404(client, session, host):
    booking, incident, followup = make_followup(session, host)
    assert client.get(answer_url(followup.id, "maybe")).status_code == 404
    assert client.post(answer_url(followup.id), data={"choice": "maybe"}).status_code == 400
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None


class _MonthAgoSigner(itsdangerous.TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 31 * 24 * 3600


def test_an_expired_link_gets_a_friendly_410(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    old = tokens.serializer("answer")
    old.signer = _MonthAgoSigner
    token = old.dumps(followup.id)
    response = client.get(f"/recovery/followups/{token}/answer/good")
    assert response.status_code == 410 and "This link has expired" in response.text
    assert client.post(f"/recovery/followups/{token}/answer", data={"choice": "good"}).status_code == 410
    # the unsubscribe link lives longer (RECOVERY_UNSUBSCRIBE_LINK_MAX_AGE, a year by default)
    unsub = tokens.serializer("unsubscribe")
    unsub.signer = _MonthAgoSigner
    assert client.get(f"/recovery/followups/{unsub.dumps(followup.id)}/unsubscribe").status_code == 200
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None


def test_a_link_for_another_purpose_is_refused(client, session, host):
    booking, incident, followup = make_followup(session, host)
    answer_token = tokens.make_token("answer", followup.id)
    unsubscribe_token = tokens.make_token("unsubscribe", followup.id)
    assert client.get(f"/recovery/followups/{answer_token}/unsubscribe").status_code == 400
    one_click = client.post(f"/recovery/followups/{answer_token}/unsubscribe", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    assert client.get(f"/recovery/followups/{unsubscribe_token}/answer/good").status_code == 400
    session.expire_all()
    assert session.query(Unsubscribe).count() == 0


def test_secret_key_rotation_keeps_links_alive_while_the_old_key_is_a_fallback(app, client, session, host):
    booking, incident, followup = make_followup(session, host)
    url = answer_url(followup.id, "good")  # signed with "test-secret"
    app.config.update(SECRET_KEY="a-new-secret", SECRET_KEY_FALLBACKS=["test-secret"])
    assert client.get(url).status_code == 200
    assert tokens.make_token("answer", followup.id) != url.split("/")[3]
    fresh = answer_url(followup.id, "good")  # signed with the new key
    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert client.get(url).status_code == 400
    assert client.get(fresh).status_code == 200


@pytest.mark.config(**CSRF_ON)
def test_the_answer_form_needs_its_csrf_token(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    refused = client.post(answer_url(followup.id), data={"choice": "good"})
    assert refused.status_code == 400 and "The page had expired" in refused.text
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None
    token = csrf_token(client.get(answer_url(followup.id, "good")).text)
    done = client.post(answer_url(followup.id), data={"choice": "good", "csrf_token": token})
    assert done.status_code == 200
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer == "good"


def test_a_too_long_comment_is_refused_kindly(app, client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    app.config["RECOVERY_MAX_TEXT_LENGTH"] = 20
    response = client.post(answer_url(followup.id), data={"choice": "not_right", "comment": "x" * 21})
    assert response.status_code == 422 and "Please keep it under 20 characters." in response.text
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None


def _unsubscribe_case(session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    _, _, later = make_followup(session, host, booking_id="b2", incident=False, status="scheduled")
    _, _, other_client = make_followup(
        session, host, booking_id="b3", incident=False, status="scheduled", client_id="c2"
    )
    return followup, later, other_client


def _assert_unsubscribed(session, followup, later, other_client):
    session.expire_all()
    assert session.get(Unsubscribe, "c1") is not None
    assert (session.get(FollowUp, later.id).status, session.get(FollowUp, later.id).last_error) == (
        "cancelled",
        "unsubscribed",
    )
    assert session.get(FollowUp, followup.id).status == "sent"
    assert session.get(FollowUp, other_client.id).status == "scheduled"
    assert [a for a, _ in actions(session)].count("client.unsubscribed") == 1


@pytest.mark.config(**CSRF_ON)
def test_one_click_unsubscribe_needs_no_csrf_token(client, session, host):
    followup, later, other_client = _unsubscribe_case(session, host)
    response = client.post(unsubscribe_url(followup.id), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    _assert_unsubscribed(session, followup, later, other_client)
    # the link is used up: a second press (or a mail client's second one-click) gets a friendly 409
    again = client.post(unsubscribe_url(followup.id), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 409 and "You are already unsubscribed" in again.text
    page = client.get(unsubscribe_url(followup.id))
    assert page.status_code == 409 and "We will not send you these mails again" in page.text
    _assert_unsubscribed(session, followup, later, other_client)


@pytest.mark.config(**CSRF_ON)
def test_the_unsubscribe_page_changes_nothing_until_the_button_is_pressed(client, session, host):
    followup, later, other_client = _unsubscribe_case(session, host)
    page = client.get(unsubscribe_url(followup.id))
    assert page.status_code == 200 and "Unsubscribe from these mails" in page.text
    assert client.post(unsubscribe_url(followup.id), data={}).status_code == 400  # no token, not one-click
    session.expire_all()
    assert session.query(Unsubscribe).count() == 0
    assert session.get(FollowUp, later.id).status == "scheduled"
    pressed = client.post(unsubscribe_url(followup.id), data={"csrf_token": csrf_token(page.text)})
    assert pressed.status_code == 200
    _assert_unsubscribed(session, followup, later, other_client)


@pytest.mark.parametrize("csrf_first", [True, False], ids=["csrf-before-recovery", "csrf-after-recovery"])
def test_a_hosts_global_csrf_protect_lets_one_click_through(db_url, host, csrf_first):
    app = Flask("csrf_host")
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=db_url, WTF_CSRF_ENABLED=True)
    db = SQLAlchemy(app)
    if csrf_first:
        CSRFProtect(app)
    recovery = Recovery(app, db=db)
    if not csrf_first:
        CSRFProtect(app)
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: None)
    client = app.test_client()
    with app.app_context():
        recovery.drop_all()
        recovery.create_all()
        try:
            followup, later, other_client = _unsubscribe_case(db.session, host)
            url = unsubscribe_url(followup.id)
            assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
            _assert_unsubscribed(db.session, followup, later, other_client)
            # the answer form is still guarded by the host's CSRFProtect
            assert client.post(answer_url(followup.id), data={"choice": "good"}).status_code == 400
        finally:
            db.session.commit()  # the host's commit (the rules only flush)
            db.session.remove()
            recovery.drop_all()
            db.engine.dispose()


def test_the_database_refuses_a_second_answer_even_past_the_first_check(session, host, monkeypatch):
    """The conditional UPDATE is the guard: a race that slips past the read still gets 409."""
    from flask_recovery.domain import feedback
    from flask_recovery.tokens import AlreadyAnswered

    booking, incident, followup = make_followup(session, host)
    _, _, reminder = make_followup(session, host, incident=False, kind="reminder")
    feedback.record_answer(session, followup.id, "good")
    monkeypatch.setattr(feedback, "_answered", lambda session, followup: False)
    with pytest.raises(AlreadyAnswered):
        feedback.record_answer(session, reminder.id, "not_right")
    with pytest.raises(AlreadyAnswered):
        feedback.record_answer(session, followup.id, "not_right")
    session.expire_all()
    assert session.get(FollowUp, reminder.id).answer is None
    assert session.get(Incident, incident.id).status == "closed"
    assert session.query(Notification).count() == 0


def test_two_presses_at_once_record_one_answer(app, session, host):
    booking, incident, followup = make_followup(session, host)
    url = answer_url(followup.id)
    barrier = threading.Barrier(4)
    statuses = []

    def press(choice):
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(url, data={"choice": choice}).status_code)

    threads = [threading.Thread(target=press, args=(c,)) for c in ("good", "not_right", "good", "not_right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409, 409, 409]
    session.expire_all()
    answer = session.get(FollowUp, followup.id).answer
    assert session.get(Incident, incident.id).status == ("closed" if answer == "good" else "reopened")
    assert session.query(Notification).count() == (answer == "not_right")


@pytest.mark.parametrize(
    "payload", ["1", True, -1, 0, 2**31, 2**40, 1.5, [1], {"id": 1}, None], ids=lambda p: f"signed-{p!r}"
)
def test_a_genuinely_signed_token_with_an_odd_payload_is_refused(client, session, host, payload):
    """Signed with the real key, but not a follow-up id: still a plain 400, never a 500."""
    booking, incident, followup = make_followup(session, host, locale="en")
    for purpose, url in (
        ("answer", "/recovery/followups/{}/answer/good"),
        ("unsubscribe", "/recovery/followups/{}/unsubscribe"),
    ):
        token = tokens.serializer(purpose).dumps(payload)
        response = client.get(url.format(token), headers={"Accept-Language": "en"})
        assert response.status_code == 400, (purpose, payload, response.status_code)
        assert "This link does not work" in response.text


@pytest.mark.parametrize(
    "raw",
    ["x" * 600, "a.b.c", "..", "%00", "%E2%80%AE", "%F0%9F%92%87", "eyJhIjoxfQ", "1.2.3.4.5", "%20"],
    ids=["long", "three-parts", "dots", "nul", "rtl", "emoji", "bare-payload", "five-parts", "space"],
)
def test_garbage_in_the_token_slot_is_a_friendly_400(client, raw):
    for url in (f"/recovery/followups/{raw}/answer/good", f"/recovery/followups/{raw}/unsubscribe"):
        response = client.get(url, headers={"Accept-Language": "en"})
        assert response.status_code == 400, (url, response.status_code)
        assert "This link does not work" in response.text and response.mimetype == "text/html"
    posted = client.post(f"/recovery/followups/{raw}/answer", data={"choice": "good"})
    assert posted.status_code == 400


def test_a_link_to_a_follow_up_that_no_longer_exists_is_a_friendly_410(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    url = answer_url(followup.id + 1000, "good")  # genuinely signed, but no such row
    response = client.get(url)
    assert response.status_code == 410 and "This link has expired" in response.text


def test_an_answer_link_signed_under_a_removed_fallback_is_refused_even_at_the_unsubscribe_route(
    app, client, session, host
):
    booking, incident, followup = make_followup(session, host, locale="en")
    old_unsubscribe = unsubscribe_url(followup.id)
    app.config.update(SECRET_KEY="rotated", SECRET_KEY_FALLBACKS=["test-secret"])
    assert client.get(old_unsubscribe).status_code == 200  # still valid during the rotation
    app.config.update(SECRET_KEY_FALLBACKS=[])
    refused = client.get(old_unsubscribe, headers={"Accept-Language": "en"})
    assert refused.status_code == 400 and "This link does not work" in refused.text
    one_click = client.post(old_unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    session.expire_all()
    assert session.query(Unsubscribe).count() == 0
