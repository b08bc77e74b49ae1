"""The example site's follow-up loop for a newcomer: ``flask --app example_app demo-followups``.

The command records a few resolved demo cases, sends their check-ins through the real
dispatcher to an SMTP sink it starts itself, prints each mail and saves it as ``.eml``;
the printed answer links then work on the site. On SQLite and PostgreSQL.
"""

import re
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from example_app import create_app, db, recovery
from flask_recovery.models import Compensation, FollowUp, Incident, Notification

LINK = re.compile(r"http://127\.0\.0\.1:5000/recovery/followups/\S+/answer/(?:good|not_right)")
CLIENTS = ("maria.ivanova@example.com", "emma.clarke@example.com", "anna.smirnova@example.com")


@pytest.fixture
def salon(db_url, tmp_path, monkeypatch):
    for name in ("RECOVERY_BASE_URL", "RECOVERY_MANAGER_EMAILS", "PORT"):
        monkeypatch.delenv(name, raising=False)  # test the example's own defaults
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "TESTING": True,
            "SECRET_KEY": "t",
            "WTF_CSRF_ENABLED": False,
            "SALON_MAIL_DIR": str(tmp_path / "mail"),
        }
    )
    yield app
    with app.app_context():
        db.session.commit()  # the host's commit (the rules only flush)
        db.session.remove()
        recovery.drop_all()
        db.drop_all()
        db.engine.dispose()


def run_demo(app, *args):
    result = app.test_cli_runner().invoke(args=["demo-followups", *args])
    assert result.exit_code == 0, result.output
    return result.output


def mails(output):
    """The printed mails: a list of {"to", "subject", "saved", "body"}."""
    found = []
    for block in re.split(r"^===== mail \d+ of \d+ =+$", output, flags=re.M)[1:]:
        head = dict(re.findall(r"^(To|Subject|Saved):\s+(.*)$", block, flags=re.M))
        body = block.split("-" * 70 + "\n", 1)[1]
        found.append({"to": head["To"], "subject": head["Subject"], "saved": head["Saved"], "body": body})
    return found


def mail_to(output, address):
    (mail,) = [m for m in mails(output) if address in m["to"]]
    return mail


def link(mail, choice):
    (url,) = [u for u in LINK.findall(mail["body"]) if u.endswith("/" + choice)]
    return urlsplit(url).path


def incident_of(app, booking_id):
    with app.app_context():
        (incident,) = db.session.scalars(db.select(Incident).where(Incident.booking_id == booking_id)).all()
        return incident


def test_demo_sends_each_check_in_once_and_saves_it(salon, tmp_path):
    output = run_demo(salon)
    assert "Sending to a local SMTP sink on 127.0.0.1:" in output
    assert "Check-ins: planned 3, sent 3, retry later 0, failed 0" in output
    printed = mails(output)
    assert len(printed) == 3
    assert sorted(m["to"].split("<")[1].rstrip(">") for m in printed) == sorted(CLIENTS)
    assert mail_to(output, "emma.clarke")["subject"] == "How are you after your visit, Emma?"
    assert mail_to(output, "maria.ivanova")["subject"].startswith("Мария")
    for mail in printed:
        assert len(LINK.findall(mail["body"])) == 2  # "all good" and "still not right"
        assert "/recovery/followups/" in mail["body"] and "/unsubscribe" in mail["body"]

    saved = sorted((tmp_path / "mail").glob("*.eml"))
    assert sorted(m["saved"] for m in printed) == [str(p) for p in saved]
    eml = message_from_bytes(Path(mail_to(output, "emma")["saved"]).read_bytes(), policy=policy.default)
    assert "emma.clarke@example.com" in eml["To"]
    assert "What will change: Elena now checks every nail" in eml.get_body(preferencelist=("plain",)).get_content()

    with salon.app_context():
        rows = db.session.scalars(db.select(FollowUp)).all()
        assert sorted(r.booking_id for r in rows) == ["1", "6", "8"]
        assert {r.status for r in rows} == {"sent"} and all(r.sent_at and r.message_id for r in rows)
        incidents = db.session.scalars(db.select(Incident)).all()
        assert sorted(i.booking_id for i in incidents) == ["1", "6", "8"]
        assert {i.status for i in incidents} == {"resolved"} and all(i.corrective_action for i in incidents)
        assert db.session.query(Compensation).filter_by(status="granted").count() == 2

    again = run_demo(salon)
    assert again.count("already has incident") == 3
    assert "Check-ins: planned 0, sent 0, retry later 0, failed 0" in again
    assert "Nothing was due" in again and "===== mail" not in again
    assert sorted((tmp_path / "mail").glob("*.eml")) == saved
    with salon.app_context():
        assert db.session.query(Incident).count() == 3
        assert db.session.query(Compensation).count() == 2
        assert db.session.query(FollowUp).count() == 3


def test_printed_answer_links_open_on_the_site(salon):
    output = run_demo(salon)
    client = salon.test_client()

    good = link(mail_to(output, "emma.clarke"), "good")
    page = client.get(good)
    assert page.status_code == 200
    assert 'action="' + good.rsplit("/", 1)[0] + '"' in page.text and "All good" in page.text
    assert incident_of(salon, "6").status == "resolved"  # opening the link changes nothing
    done = client.post(good.rsplit("/", 1)[0], data={"choice": "good"})
    assert done.status_code == 200
    assert incident_of(salon, "6").status == "closed"
    assert client.get(good).status_code == 409  # answered once

    not_right = link(mail_to(output, "maria.ivanova"), "not_right")
    assert client.get(not_right).status_code == 200
    answer = client.post(not_right.rsplit("/", 1)[0], data={"choice": "not_right", "comment": "Опять опоздали."})
    assert answer.status_code == 200
    assert incident_of(salon, "1").status == "reopened"
    with salon.app_context():
        assert db.session.query(Notification).filter_by(kind="unhappy_answer", status="pending").count() == 1

    # The next run has no check-in to send, but delivers the managers' alert to the same sink.
    alert_run = run_demo(salon)
    assert "Check-ins: planned 0, sent 0" in alert_run
    assert "Staff mail: sent 1, retry later 0, failed 0, skipped 0" in alert_run
    alert = mail_to(alert_run, "marina@salon.example.com")
    assert "Мария Иванова" in alert["subject"]
    assert "http://127.0.0.1:5000/recovery/bookings/1" in alert["body"]
    with salon.app_context():
        assert db.session.query(Notification).filter_by(status="sent").count() == 1


def test_console_mode_sends_through_the_dispatcher_without_smtp(salon, tmp_path):
    output = run_demo(salon, "--console")
    assert "Sending to the console (no SMTP" in output
    assert "Check-ins: planned 3, sent 3, retry later 0, failed 0" in output
    assert len(mails(output)) == 3 and len(LINK.findall(output)) == 6
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 3
    with salon.app_context():
        assert {r.status for r in db.session.scalars(db.select(FollowUp))} == {"sent"}
    assert "Nothing was due" in run_demo(salon, "--console")
