"""The client's check-in mail: her language, her visit, what changed, safe headers and links."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from flask_recovery import ConfigError, domain
from flask_recovery.followup_mail import MailBatch, message_id_for, render_followup
from flask_recovery.models import FollowUp, utcnow
from flask_recovery.notifications import external_url
from flask_recovery.tokens import read_token

from .conftest import make_app

MAIL = {
    "MAIL_DEFAULT_SENDER": "Salon Aurora <desk@salon.test>",
    "RECOVERY_BASE_URL": "https://salon.example.com",
}
DESCRIPTION = "Olga was 40 minutes late because of a personal call (internal note)"
CHANGE = "We now confirm every appointment by phone the day before."


def make_followup(
    session,
    host,
    *,
    booking_id: str = "b1",
    locale: str | None = "ru",
    kind: str = "checkin",
    status: str = "sent",
    resolve: bool = True,
    incident: bool = True,
    corrective_action: str | None = CHANGE,
    **booking_overrides,
):
    """A booking, an incident recorded (and resolved) by staff, and its follow-up row.

    Returns ``(booking, incident or None, followup)``.
    """
    if locale and locale.startswith("ru"):
        booking_overrides.setdefault("client_name", "Анна Смирнова")
    booking = host.bookings.get(booking_id) or host.add_booking(booking_id, **booking_overrides)
    case = None
    if incident:
        admin = host.STAFF["admin"]
        case = domain.record_incident(
            session,
            booking,
            admin,
            category="late",
            severity="major",
            description=DESCRIPTION,
            corrective_action=corrective_action,
        )
        if resolve:
            case = domain.resolve_incident(session, case.id, admin)
    followup = FollowUp(
        booking_id=booking.id,
        client_id=booking.client_id,
        incident_id=case.id if case else None,
        location=booking.location,
        kind=kind,
        status=status,
        due_at=utcnow(),
        locale=locale,
        email=booking.client_email,
        client_name=booking.client_name,
        sent_at=utcnow() if status == "sent" else None,
    )
    session.add(followup)
    session.commit()
    return booking, case, followup


def parsed(message):
    """The Flask-Mail message as a receiving mail client parses it."""
    return message_from_bytes(message.as_bytes(), policy=policy.default)


def texts(message):
    mail = parsed(message)
    return tuple(mail.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


@pytest.mark.config(**MAIL)
def test_russian_mail_is_warm_personal_and_in_russian(session, host):
    booking, incident, followup = make_followup(session, host, locale="ru", service="Стрижка")
    message = render_followup(followup, booking, incident)
    text, html = texts(message)
    assert parsed(message)["Subject"] == "Анна, как вы после визита к нам?"
    assert text.startswith("Здравствуйте, Анна!")
    assert "(Стрижка)" in text and "Нам жаль, что не всё прошло так, как должно было" in text
    assert f"Что изменим: {CHANGE}" in text
    assert "Теперь всё в порядке? Достаточно одного нажатия:" in text
    assert re.search(r"Всё хорошо: https://salon\.example\.com/recovery/followups/[\w.-]+/answer/good\n", text)
    assert re.search(r"Всё ещё не так: https://salon\.example\.com/recovery/followups/[\w.-]+/answer/not_right", text)
    assert re.search(
        r"Отписаться от таких писем: https://salon\.example\.com/recovery/followups/[\w.-]+/unsubscribe", text
    )
    assert "С теплом,\nSalon Aurora" in text
    assert '<html lang="ru">' in html and ">Всё хорошо</a>" in html and ">Всё ещё не так</a>" in html
    assert "<img" not in html
    # the staff's own description of what went wrong is internal: never in the client's mail
    assert "personal call" not in text and "personal call" not in html


@pytest.mark.config(**MAIL)
def test_english_mail(session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    message = render_followup(followup, booking, incident)
    text, html = texts(message)
    assert message.subject == "How are you after your visit, Anna?"
    assert text.startswith("Hello, Anna!")
    assert "Thank you for visiting us on " in text and "(Haircut)." in text
    assert f"What will change: {CHANGE}" in text
    assert "All good: https://salon.example.com/recovery/followups/" in text
    assert '<html lang="en">' in html and "Is everything all right now?" in html


@pytest.mark.config(**MAIL, RECOVERY_DEFAULT_LOCALE="en")
@pytest.mark.parametrize(("stored", "expected"), [("ru_RU", "Анна, как"), ("ru-RU", "Анна, как"), ("de", "How are")])
def test_locale_is_matched_or_falls_back_to_the_default(session, host, stored, expected):
    host.add_booking("b1", locale=None, client_name="Анна Смирнова")
    booking, incident, followup = make_followup(session, host, locale=stored)
    assert render_followup(followup, booking, incident).subject.startswith(expected)


@pytest.mark.config(**MAIL)
def test_multipart_with_unsubscribe_headers_and_a_stable_message_id(session, host):
    booking, incident, followup = make_followup(session, host)
    first, second = render_followup(followup, booking, incident), render_followup(followup, booking, incident)
    mail = parsed(first)
    assert mail.is_multipart()
    types = [part.get_content_type() for part in mail.walk()]
    assert "multipart/alternative" in types and "text/plain" in types and "text/html" in types
    assert re.fullmatch(
        r"<https://salon\.example\.com/recovery/followups/[\w.-]+/unsubscribe>", mail["List-Unsubscribe"]
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    expected_id = f"<recovery-followup-{followup.id}-checkin@salon.example.com>"
    assert mail.get_all("Message-ID") == [expected_id]
    assert parsed(second)["Message-ID"] == expected_id == message_id_for(followup)
    assert mail["To"] == "Анна Смирнова <anna@client.test>"
    assert "Auto-Submitted" not in mail  # a personal mail, not an automatic notice


@pytest.mark.config(RECOVERY_BASE_URL=None, MAIL_DEFAULT_SENDER=("Salon", "desk@aurora.test"))
def test_message_id_domain_falls_back_to_the_sender(session, host):
    booking, incident, followup = make_followup(session, host, kind="reminder")
    assert message_id_for(followup) == f"<recovery-followup-{followup.id}-reminder@aurora.test>"


@pytest.mark.config(**MAIL)
def test_what_staff_typed_is_escaped_in_html(session, host):
    evil = "<script>alert('x')</script> & <b>more</b>"
    booking, incident, followup = make_followup(session, host, locale="en", corrective_action=evil)
    text, html = texts(render_followup(followup, booking, incident))
    assert evil in text
    assert "<script>" not in html and "<b>more</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;more&lt;/b&gt;" in html


@pytest.mark.config(**MAIL)
def test_a_name_with_line_breaks_cannot_add_a_header(session, host):
    name = "Anna\r\nBcc: evil@attacker.test\r\nX-Evil: 1"
    booking, incident, followup = make_followup(session, host, locale="en", client_name=name)
    message = render_followup(followup, booking, incident)
    assert not message.has_bad_headers()
    assert message.send_to == {(message.recipients[0])}
    assert "\n" not in message.subject and "\r" not in message.subject
    mail = parsed(message)
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    assert [a.addr_spec for a in mail["To"].addresses] == ["anna@client.test"]
    assert len(mail["To"].addresses) == 1 and "@" not in mail["To"].addresses[0].display_name
    assert mail["Subject"] == "How are you after your visit, Anna?"
    assert "evil@attacker.test" not in mail["Subject"]


@pytest.mark.config(**MAIL)
def test_a_subject_name_is_one_line_even_if_the_whole_name_is_hostile(session, host):
    booking, incident, followup = make_followup(session, host, locale="en", client_name="\r\nBcc: evil@x.test")
    message = render_followup(followup, booking, incident)
    mail = parsed(message)
    assert mail["Bcc"] is None
    assert "\n" not in message.subject
    assert [a.addr_spec for a in mail["To"].addresses] == ["anna@client.test"]


@pytest.mark.config(**MAIL)
def test_the_mail_reaches_a_real_smtp_server_intact(app, session, host, smtp_server):
    from .test_notifications import point_mail_at

    point_mail_at(app, smtp_server.port)
    booking, incident, followup = make_followup(session, host, locale="ru")
    app.recovery.mailer.send(render_followup(followup, booking, incident))
    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    (mail,) = smtp_server.messages
    assert mail["Subject"] == "Анна, как вы после визита к нам?"
    assert mail["Message-ID"] == f"<recovery-followup-{followup.id}-checkin@salon.example.com>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Unsubscribe"].startswith("<https://salon.example.com/recovery/followups/")
    assert [a.addr_spec for a in mail["To"].addresses] == ["anna@client.test"]
    assert "Здравствуйте, Анна!" in mail.get_body(("plain",)).get_content()
    assert ">Всё хорошо</a>" in mail.get_body(("html",)).get_content()


@pytest.mark.config(**MAIL)
def test_what_was_done_names_the_remedy_and_the_voucher(session, host):
    booking, incident, followup = make_followup(session, host, locale="ru")
    compensation, _ = domain.grant_compensation(
        session, incident.id, host.load, host.STAFF["admin"], kind="percent_discount", percent=20, note="sorry"
    )
    text, html = texts(render_followup(followup, booking, incident))
    assert "Что мы сделали: скидка 20% на следующий визит" in text
    assert compensation.voucher_code and f"ваш код: {compensation.voucher_code}, действует до" in text
    assert compensation.voucher_code in html


@pytest.mark.config(**MAIL)
def test_a_check_in_after_an_ordinary_visit_without_the_booking(session, host):
    booking, _, followup = make_followup(session, host, locale="en", incident=False)
    text, html = texts(render_followup(followup, None, None))
    assert text.startswith("Hello, Anna!")
    assert "Thank you for your recent visit." in text and "How did you like it?" in text
    assert "What will change" not in text and "We are sorry" not in text


@pytest.mark.config(MAIL_DEFAULT_SENDER="desk@salon.test", RECOVERY_BASE_URL="https://salon.example.com")
def test_no_name_and_no_salon_name_still_reads_well(session, host):
    booking, incident, followup = make_followup(session, host, locale="en", client_name="")
    followup.client_name = None
    message = render_followup(followup, None, incident)
    text, _html = texts(message)
    assert message.subject == "How are you after your visit?"
    assert text.startswith("Hello!")
    assert "Warm regards,\nYour salon team" in text


@pytest.mark.config(**MAIL, RECOVERY_SALON_NAME="Studio Nord")
def test_salon_name_setting_wins(session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    text, html = texts(render_followup(followup, booking, incident))
    assert "Warm regards,\nStudio Nord" in text and "Studio Nord" in html


@pytest.mark.config(**MAIL)
def test_no_usable_address_is_refused(session, host):
    booking, incident, followup = make_followup(session, host, client_email="not an address")
    with pytest.raises(ValueError, match="no usable e-mail address"):
        render_followup(followup, booking, incident)


@pytest.mark.config(MAIL_DEFAULT_SENDER="desk@salon.test")
def test_without_a_base_url_no_mail_with_broken_links_is_made(session, host):
    booking, incident, followup = make_followup(session, host)
    with pytest.raises(RuntimeError, match="RECOVERY_BASE_URL"):
        render_followup(followup, booking, incident)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RECOVERY_LINK_MAX_AGE", 30),
        ("RECOVERY_LINK_MAX_AGE", timedelta(0)),
        ("RECOVERY_UNSUBSCRIBE_LINK_MAX_AGE", "1 year"),
        ("RECOVERY_SALON_NAME", "Aurora\nBcc: x"),
        ("RECOVERY_SALON_NAME", 7),
    ],
)
def test_bad_link_and_salon_settings_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        make_app(f"sqlite:///{tmp_path / 'c.sqlite'}", {key: value})


@pytest.mark.config(**MAIL, RECOVERY_URL_PREFIX="/care")
def test_a_batch_builds_each_link_exactly_as_url_for_would(app, session, host):
    """A dispatch batch builds each kind of link once and puts each mail's token in it:
    the result is the very URL ``url_for`` gives for that token, and it opens the page."""
    booking, incident, followup = make_followup(session, host, locale="en")
    with app.test_request_context():
        batch = MailBatch()
        links = batch.links(followup.id)
        batch._templates = None  # the way a batch goes when a host's URL defaults get in the way
        built_each = batch.links(followup.id)
    for found in (links, built_each):
        answer = re.fullmatch(r"https://salon\.example\.com/care/followups/([\w.-]+)/answer/good", found["good"])
        unsubscribe = re.fullmatch(
            r"https://salon\.example\.com/care/followups/([\w.-]+)/unsubscribe", found["unsubscribe"]
        )
        assert answer and unsubscribe, found
        with app.app_context():
            assert read_token("answer", answer.group(1)) == followup.id
            assert read_token("unsubscribe", unsubscribe.group(1)) == followup.id
            assert found == {
                "good": external_url("recovery_answers.answer_page", token=answer.group(1), choice="good"),
                "not_right": external_url("recovery_answers.answer_page", token=answer.group(1), choice="not_right"),
                "unsubscribe": external_url("recovery_answers.unsubscribe_page", token=unsubscribe.group(1)),
            }
    client = app.test_client()
    for link in links.values():
        assert client.get(link.removeprefix("https://salon.example.com")).status_code == 200
