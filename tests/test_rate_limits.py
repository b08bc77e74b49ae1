"""Rate limits on the client's link pages: request N+1 in the window gets a friendly 429.

Flask-Limiter, storage from ``RECOVERY_RATE_LIMIT_STORAGE_URI``: in memory, on the local
Redis (as in production), and on a Redis that is down (the pages stay up). The
extension's limiter must not touch a host's own Flask-Limiter, nor the staff pages.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import ConfigError, Recovery, tokens
from flask_recovery.models import FollowUp

from .conftest import make_app
from .test_followup_mail import make_followup

REDIS_URL = "redis://127.0.0.1:6379/0"


def answer_url(followup_id: int, choice: str = "good") -> str:
    return f"/recovery/followups/{tokens.make_token('answer', followup_id)}/answer/{choice}"


def unsubscribe_url(followup_id: int) -> str:
    return f"/recovery/followups/{tokens.make_token('unsubscribe', followup_id)}/unsubscribe"


def address() -> str:
    """A client address of its own for each test (the limiter counts per address)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}"


def get(client, url: str, addr: str, **headers):
    return client.get(url, environ_base={"REMOTE_ADDR": addr}, headers=headers)


def assert_friendly_429(response, lang: str = "en") -> None:
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert f'<html lang="{lang}">' in response.text
    heading = {"en": "Please wait a moment", "ru": "Пожалуйста, подождите немного"}[lang]
    assert heading in response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.config(RECOVERY_RATE_LIMIT="5 per minute")
def test_request_n_plus_one_gets_a_friendly_429(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    addr = address()
    url = answer_url(followup.id)
    for _ in range(5):
        assert get(client, url, addr).status_code == 200
    refused = get(client, url, addr, **{"Accept-Language": "en"})
    assert_friendly_429(refused)
    assert "This page was opened many times in a short while" in refused.text
    # all the link pages share one count per address, the POST too; nothing is recorded
    assert get(client, unsubscribe_url(followup.id), addr).status_code == 429
    posted = client.post(
        f"/recovery/followups/{tokens.make_token('answer', followup.id)}/answer",
        data={"choice": "not_right"},
        environ_base={"REMOTE_ADDR": addr},
    )
    assert posted.status_code == 429
    session.expire_all()
    assert session.get(FollowUp, followup.id).answer is None
    # another address is not affected
    assert get(client, url, address()).status_code == 200


@pytest.mark.config(RECOVERY_RATE_LIMIT="3 per minute")
def test_the_429_page_speaks_the_browsers_language(client):
    addr = address()
    for _ in range(3):
        assert get(client, "/recovery/followups/nonsense/answer/good", addr).status_code == 400
    assert_friendly_429(
        get(client, "/recovery/followups/nonsense/answer/good", addr, **{"Accept-Language": "ru"}), "ru"
    )


@pytest.mark.config(RECOVERY_RATE_LIMIT="2 per 2 seconds")
def test_the_window_moves_on(client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    addr = address()
    url = unsubscribe_url(followup.id)
    assert [get(client, url, addr).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(2.2)
    assert get(client, url, addr).status_code == 200


@pytest.mark.config(RECOVERY_RATE_LIMIT="3 per minute")
def test_staff_pages_and_the_api_are_not_limited(client, host):
    host.add_booking("b1")
    host.login("admin")
    addr = address()
    for _ in range(10):
        assert get(client, "/recovery/bookings/b1", addr).status_code == 200
        assert get(client, "/recovery/api/bookings/b1", addr).status_code == 200


def test_the_limit_is_read_on_each_request_and_can_be_switched_off(app, client):
    addr = address()
    url = "/recovery/followups/nonsense/unsubscribe"
    app.config["RECOVERY_RATE_LIMIT_ENABLED"] = False
    assert {get(client, url, addr).status_code for _ in range(40)} == {400}
    app.config.update(RECOVERY_RATE_LIMIT_ENABLED=True, RECOVERY_RATE_LIMIT="2 per minute")
    assert [get(client, url, addr).status_code for _ in range(3)] == [400, 400, 429]


def test_the_default_allows_thirty_a_minute(client):
    addr = address()
    statuses = [get(client, "/recovery/followups/nonsense/answer/good", addr).status_code for _ in range(31)]
    assert statuses == [400] * 30 + [429]


@pytest.mark.config(RECOVERY_RATE_LIMIT="4 per minute", RECOVERY_RATE_LIMIT_STORAGE_URI=REDIS_URL)
def test_counts_live_in_redis_shared_by_every_worker(db_url, app, client, session, host):
    booking, incident, followup = make_followup(session, host, locale="en")
    addr = address()
    url = answer_url(followup.id)
    store = redis.Redis.from_url(REDIS_URL)
    try:
        assert get(client, url, addr).status_code == 200
        keys = [k.decode() for k in store.scan_iter(match=f"*flask-recovery*{addr}*")]
        assert keys, "the count is not in Redis"
        # a second worker (another app, same settings) shares the count
        other = make_app(db_url, {"RECOVERY_RATE_LIMIT": "4 per minute", "RECOVERY_RATE_LIMIT_STORAGE_URI": REDIS_URL})
        other_client = other.test_client()
        assert get(other_client, "/recovery/followups/nonsense/answer/good", addr).status_code == 400
        assert [get(client, url, addr).status_code for _ in range(3)] == [200, 200, 429]
        assert_friendly_429(get(other_client, "/recovery/followups/nonsense/answer/good", addr))
        with other.app_context():
            other.db.engine.dispose()
    finally:
        for found in store.scan_iter(match=f"*flask-recovery*{addr}*"):
            store.delete(found)
        store.close()


@pytest.mark.config(RECOVERY_RATE_LIMIT="2 per minute", RECOVERY_RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
def test_an_unreachable_storage_keeps_the_pages_up(client, session, host, caplog):
    booking, incident, followup = make_followup(session, host, locale="en")
    addr = address()
    url = answer_url(followup.id)
    # nothing listens on port 1: the limiter logs it and counts in memory meanwhile
    assert [get(client, url, addr).status_code for _ in range(3)] == [200, 200, 429]
    assert any("storage unreachable" in record.getMessage() for record in caplog.records)


BAD = [
    ("RECOVERY_RATE_LIMIT_ENABLED", "yes"),
    ("RECOVERY_RATE_LIMIT", "lots"),
    ("RECOVERY_RATE_LIMIT", ""),
    ("RECOVERY_RATE_LIMIT", 30),
    ("RECOVERY_RATE_LIMIT_STORAGE_URI", "localhost:6379"),
    ("RECOVERY_RATE_LIMIT_STORAGE_URI", "ftp://x"),
    ("RECOVERY_RATE_LIMIT_STORAGE_URI", "async+redis://localhost"),
    ("RECOVERY_RATE_LIMIT_STORAGE_URI", None),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_bad_rate_limit_settings_fail_at_init_app_naming_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        make_app(f"sqlite:///{tmp_path / 'x.sqlite'}", {key: value})


def test_good_rate_limit_settings_are_accepted(tmp_path):
    app = make_app(
        f"sqlite:///{tmp_path / 'x.sqlite'}",
        {"RECOVERY_RATE_LIMIT": "10/minute; 100/day", "RECOVERY_RATE_LIMIT_STORAGE_URI": "redis://cache:6379/2"},
    )
    assert app.config["RECOVERY_RATE_LIMIT_ENABLED"] is True


# -- a host with its own Flask-Limiter ---------------------------------------------------------


def host_app(db_url: str, host, limiter_first: bool):
    """A host with its own limiter (2 per minute on its /ping, its own RATELIMIT_* settings)."""
    app = Flask("limited_host")
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI=db_url,
        WTF_CSRF_ENABLED=False,
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_APPLICATION="1000 per minute",
        RATELIMIT_KEY_PREFIX="host",
        RECOVERY_RATE_LIMIT="3 per minute",
    )
    db = SQLAlchemy(app)
    host_limiter = Limiter(get_remote_address)

    @app.get("/ping")
    @host_limiter.limit("2 per minute")
    def ping():
        return "pong"

    @app.errorhandler(429)
    def host_429(error):
        return "host says slow down", 429

    if limiter_first:
        host_limiter.init_app(app)
    recovery = Recovery(app, db=db)
    if not limiter_first:
        host_limiter.init_app(app)
    recovery.booking_loader(host.load)
    recovery.staff_loader(lambda: None)
    return app, db, recovery, host_limiter


@pytest.mark.parametrize("limiter_first", [True, False], ids=["host-limiter-first", "recovery-first"])
def test_a_hosts_own_limiter_and_ours_do_not_mix(db_url, host, limiter_first):
    app, db, recovery, host_limiter = host_app(db_url, host, limiter_first)
    client = app.test_client()
    addr = address()
    try:
        assert len(app.extensions["limiter"]) == 2
        # the host's limit on its route, with its own 429; our link pages do not count there
        assert [get(client, "/ping", addr).status_code for _ in range(2)] == [200, 200]
        third = get(client, "/ping", addr)
        assert (third.status_code, third.text) == (429, "host says slow down")
        # our limit (3) on our pages, with our page; the host's 2-per-minute does not apply here
        ours = [get(client, "/recovery/followups/x/answer/good", addr).status_code for _ in range(4)]
        assert ours == [400, 400, 400, 429]
        assert_friendly_429(get(client, "/recovery/followups/x/unsubscribe", addr))
        # the host's application-wide limit is its own business: our limiter did not take it up
        ours_limiter = app.extensions["recovery"].extra["limiter"]
        assert ours_limiter.limit_manager._application_limits == []
        assert ours_limiter._key_prefix == "flask-recovery" and host_limiter._key_prefix == "host"
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_host_that_switched_its_limiter_off_keeps_ours(db_url, host):
    app = Flask("unlimited_host")
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI=db_url,
        RATELIMIT_ENABLED=False,
        RATELIMIT_DEFAULT="1 per minute",
        RECOVERY_RATE_LIMIT="2 per minute",
    )
    db = SQLAlchemy(app)
    Limiter(get_remote_address, app=app)
    recovery = Recovery(app, db=db)
    recovery.staff_loader(lambda: None)
    client = app.test_client()
    addr = address()
    try:
        statuses = [get(client, "/recovery/followups/x/answer/good", addr).status_code for _ in range(3)]
        assert statuses == [400, 400, 429]
    finally:
        with app.app_context():
            db.engine.dispose()
