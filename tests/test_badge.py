"""The flag badge in a host's own template: what it shows, what it hides, and 200 badges
in the same number of queries as one."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import render_template_string
from jinja2 import DictLoader
from sqlalchemy import event

from flask_recovery import domain
from flask_recovery.domain import flags
from flask_recovery.models import Flag

from .conftest import make_app

DAY_LIST = (
    "<ul>{% for b in bookings %}"
    '<li data-id="{{ b.id if b.id is defined else b }}">{{ recovery_badge(b) }}</li>'
    "{% endfor %}</ul>"
)
#: The same list drawing its badges at once: one call, then a lookup per row.
DAY_LIST_BULK = (
    "{% set drawn = recovery_badges(bookings) %}<ul>{% for b in bookings %}"
    '<li data-id="{{ b.id if b.id is defined else b }}">{{ drawn[b.id if b.id is defined else b] }}</li>'
    "{% endfor %}</ul>"
)


def upcoming(host, booking_id, client_id="c1", days=1, **overrides):
    now = datetime.now(UTC).replace(microsecond=0)
    values = dict(
        client_id=client_id,
        starts_at=now + timedelta(days=days),
        ends_at=now + timedelta(days=days, hours=1),
        status="booked",
    )
    values.update(overrides)
    return host.add_booking(booking_id, **values)


def flag_client(app, host, client_id="c1", **fields):
    """Record a late start on a past booking of the client: she is flagged vip."""
    booking = host.add_booking(f"past-{client_id}-{len(host.bookings)}", client_id=client_id)
    values = dict(category="late", severity="major", description="Master started 25 minutes late")
    values.update(fields)
    with app.app_context():
        domain.record_incident(app.db.session, booking, host.login("admin"), **values)
    return booking


@pytest.fixture
def day_list(app, host):
    """A host route rendering its own day list with badges; ``?ids=1`` passes ids."""
    from flask import request

    @app.get("/host/day")
    def host_day():
        bookings = [b for b in host.bookings.values() if not b.id.startswith("past-")]
        if request.args.get("ids"):
            bookings = [b.id for b in bookings]
        if request.args.get("prefetch"):
            app.recovery.flags_for_bookings(bookings)
        return render_template_string(DAY_LIST_BULK if request.args.get("bulk") else DAY_LIST, bookings=bookings)

    return app.test_client()


def badges(html):
    return re.findall(r'<li data-id="([^"]+)">(.*?)</li>', html, re.S)


def test_the_badge_shows_the_reason_on_hover_and_for_screen_readers(app, host, day_list):
    flag_client(app, host)
    upcoming(host, "b2")
    upcoming(host, "b3", client_id="c2")
    host.login("master")
    html = day_list.get("/host/day").text
    shown = dict(badges(html))
    assert shown["b3"] == ""  # no flag: nothing at all
    badge = shown["b2"]
    assert badge.count('data-recovery-flag="vip"') == 1
    root = re.search(r"<a [^>]*>", badge).group(0)
    assert 'data-recovery-flag="vip"' in root and 'href="/recovery/clients/c1?booking=b2"' in root
    reason = "Last visit: Late start (major): Master started 25 minutes late."
    assert f'title="{reason}' in root
    assert re.search(r'class="recovery-badge-reason">.*' + re.escape(reason), badge)  # read out, shown on focus
    assert '<span class="recovery-badge-label">VIP<span class="recovery-visually-hidden">:</span></span>' in badge
    assert html.count("recovery.css") == 1  # the first badge brings the stylesheet once


def test_drawing_the_whole_list_at_once_gives_the_same_badges(app, host, day_list):
    flag_client(app, host)
    flag_client(app, host, client_id="c2", category="client_conduct", severity="major", description="Rude")
    upcoming(host, "b1")
    upcoming(host, "b2", client_id="c2")
    upcoming(host, "b3", client_id="c3")
    host.login("master")
    each = dict(badges(day_list.get("/host/day").text))
    bulk = dict(badges(day_list.get("/host/day?bulk=1").text))
    assert bulk == each and bulk["b3"] == ""
    assert 'data-recovery-flag="vip"' in bulk["b1"] and 'data-recovery-flag="conduct"' in bulk["b2"]
    host.login(None)
    assert set(dict(badges(day_list.get("/host/day?bulk=1").text)).values()) == {""}
    with app.test_request_context():
        from flask_recovery.widgets import render_badges

        host.login("admin")
        drawn = render_badges([host.bookings["b1"]])
        assert drawn["b1"] and drawn[12345] == "" and drawn["nope"] == ""


def test_a_script_in_the_reason_comes_back_inert(app, host, day_list):
    flag_client(app, host)
    upcoming(host, "b2")
    evil = '<script>alert("x")</script>" onmouseover="alert(1)'
    with app.app_context():
        flags.set_flag(app.db.session, "c1", host.login("manager"), type="vip", reason=evil)
    badge = dict(badges(day_list.get("/host/day").text))["b2"]
    assert "<script>" not in badge and 'onmouseover="' not in badge
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#34; onmouseover=&#34;alert(1)" in badge


def test_conduct_wins_and_its_note_is_only_for_managers(app, host, day_list):
    flag_client(app, host)
    flag_client(app, host, category="client_conduct", severity="critical", description="Shouted at Olga")
    with app.app_context():
        flags.set_flag(app.db.session, "c1", host.login("manager"), type="conduct", reason="Threatened Olga by phone")
    upcoming(host, "b2")
    host.login("master")
    badge = dict(badges(day_list.get("/host/day").text))["b2"]
    assert 'data-recovery-flag="conduct"' in badge and 'data-recovery-flag="vip"' not in badge
    assert "Threatened" not in badge and "Late start" not in badge
    assert str(flags.CONDUCT_NOTICE) in badge
    assert '<span class="recovery-badge-label">Warning<span class="recovery-visually-hidden">:</span></span>' in badge
    host.login("manager")
    badge = dict(badges(day_list.get("/host/day").text))["b2"]
    assert "Threatened Olga by phone" in badge and "Conduct warning: abuse of staff" in badge


def test_nothing_without_staff_outside_ones_branch_or_on_the_booking_it_was_set_on(app, host, day_list):
    past = flag_client(app, host)
    upcoming(host, "b2")
    host.login(None)
    assert dict(badges(day_list.get("/host/day").text))["b2"] == ""
    host.login("north_admin")
    assert dict(badges(day_list.get("/host/day").text))["b2"] == ""  # a centre booking
    upcoming(host, "n1", location="north")
    assert 'data-recovery-flag="vip"' in dict(badges(day_list.get("/host/day").text))["n1"]
    host.login("admin")
    with app.test_request_context():
        assert app.recovery.badge(past) == ""
        assert app.recovery.badge("no-such-booking") == ""


@pytest.mark.config(RECOVERY_PERMISSIONS={"client.view": ["manager"]})
def test_without_client_view_the_badge_is_not_a_link_but_still_focusable(app, host, day_list):
    flag_client(app, host)
    upcoming(host, "b2")
    host.login("master")
    badge = dict(badges(day_list.get("/host/day").text))["b2"]
    assert badge.startswith("<link") and "<a " not in badge
    assert re.search(r'<span class="recovery-badge recovery-badge-vip" data-recovery-flag="vip" tabindex="0"', badge)


def test_gone_once_used_up_lifted_or_expired(app, host, day_list):
    flag_client(app, host)
    upcoming(host, "b2")
    upcoming(host, "b3", days=14)
    host.login("admin")
    assert "data-recovery-flag" in dict(badges(day_list.get("/host/day").text))["b3"]
    with app.app_context():
        app.recovery.visit_completed("b2")
    assert dict(badges(day_list.get("/host/day").text))["b3"] == ""


@pytest.mark.parametrize("query", ["", "?prefetch=1"])
def test_an_expired_flag_shows_no_badge(app, host, day_list, query):
    flag_client(app, host, now=datetime.now(UTC) - timedelta(days=91))  # RECOVERY_VIP_DAYS is 90
    flag_client(app, host, client_id="c2", now=datetime.now(UTC) - timedelta(days=89))
    upcoming(host, "b1")
    upcoming(host, "b2", client_id="c2")
    host.login("admin")
    shown = dict(badges(day_list.get("/host/day" + query).text))
    assert shown["b1"] == "" and 'data-recovery-flag="vip"' in shown["b2"]


def _statements(app, client, url):
    seen = []
    with app.app_context():
        engine = app.db.engine

    def before(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        response = client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert response.status_code == 200
    return response.text, seen


@pytest.mark.parametrize("query", ["", "?prefetch=1", "?ids=1&prefetch=1", "?ids=1", "?bulk=1", "?bulk=1&ids=1"])
def test_200_badges_cost_the_queries_of_one(app, host, day_list, query):
    flag_client(app, host, client_id="c0")
    upcoming(host, "d0", client_id="c0")
    host.login("admin")
    html, one = _statements(app, day_list, "/host/day" + query)
    assert len(re.findall(r'data-recovery-flag="vip"', html)) == 1
    for n in range(1, 200):
        if n % 10 == 0:
            flag_client(app, host, client_id=f"c{n}")
        upcoming(host, f"d{n}", client_id=f"c{n}")
    if "ids" in query:
        with app.app_context():  # the host told the extension of its bookings as they were made
            for n in range(200):
                app.recovery.booking_created(f"d{n}")
    host.login("admin")
    html, many = _statements(app, day_list, "/host/day" + query)
    assert len(re.findall(r'<li data-id="d\d+">', html)) == 200
    assert len(re.findall(r'data-recovery-flag="vip"', html)) == 20
    assert len(many) == len(one) <= 2, (one, many)


# -- the badge drawn without a macro call, and a host's own badge template ------------------

BADGE_SOURCE = (Path(flags.__file__).parent.parent / "templates" / "recovery" / "_badge.html").read_text()


def _override_badge(app, source):
    """The host ships its own ``recovery/_badge.html`` (its loader comes before the extension's)."""
    app.jinja_loader = DictLoader({"recovery/_badge.html": source})


@pytest.mark.parametrize("role", ["admin", "master"])
@pytest.mark.config(RECOVERY_PERMISSIONS={"client.view": ["admin", "manager"]})
def test_a_host_copy_of_the_badge_template_draws_the_same_page_as_the_packaged_one(app, host, db_url, role):
    """The packaged badge is drawn in Python (no macro call per badge): byte for byte what the
    template draws, for a link and a plain badge, vip and conduct, and text that needs escaping."""
    flag_client(app, host)
    flag_client(app, host, client_id='c/2&"x"', category="client_conduct", severity="major", description="Rude")
    with app.app_context():
        flags.set_flag(app.db.session, "c1", host.login("manager"), type="vip", reason="Tea <b>&</b> 'biscuits'")
    upcoming(host, "b1")
    upcoming(host, "b 2/&", client_id='c/2&"x"')
    host.login(role)
    packaged = day_list_page(app, host)
    if role == "admin":  # client.view: a link, the ids quoted into it
        assert 'href="/recovery/clients/c%2F2%26%22x%22?booking=b%202%2F%26"' in packaged
    else:  # no client.view: a focusable span, no link
        assert 'href="/recovery/clients' not in packaged and packaged.count('tabindex="0"') == 2
    assert "Tea &lt;b&gt;&amp;&lt;/b&gt; &#39;biscuits&#39;" in packaged
    assert packaged.count('data-recovery-flag="vip"') == 1 and packaged.count('data-recovery-flag="conduct"') == 1

    other = make_app(db_url, app.config, host)
    _override_badge(other, BADGE_SOURCE)  # the same source, but the host's file: drawn by the macro
    try:
        assert day_list_page(other, host) == packaged
    finally:
        with other.app_context():
            other.db.engine.dispose()


def day_list_page(app, host, bulk=False):
    with app.test_request_context():
        bookings = [b for b in host.bookings.values() if not b.id.startswith("past-")]
        return render_template_string(DAY_LIST_BULK if bulk else DAY_LIST, bookings=bookings)


def test_a_host_badge_template_is_used_and_still_escapes_the_reason(app, host):
    _override_badge(
        app,
        '{% macro badge(kind, label, reason, url) %}<mark data-recovery-flag="{{ kind }}">{{ label }}: {{ reason }}'
        "</mark>{% endmacro %}",
    )
    flag_client(app, host)
    with app.app_context():
        flags.set_flag(app.db.session, "c1", host.login("manager"), type="vip", reason="<script>x()</script>")
    upcoming(host, "b2")
    host.login("admin")
    for bulk in (False, True):
        badge = dict(badges(day_list_page(app, host, bulk=bulk)))["b2"]
        assert '<mark data-recovery-flag="vip">VIP: ' in badge and "recovery-badge" not in badge
        assert "&lt;script&gt;x()&lt;/script&gt;" in badge and "<script>" not in badge


class Row:
    """A host's own row: integer ids, as many hosts have them."""

    def __init__(self, id, client_id, ends_at, location=None):  # noqa: A002
        self.id, self.client_id, self.ends_at, self.location = id, client_id, ends_at, location


def test_rows_with_integer_ids_find_their_clients_flags_exactly(app, host):
    """An integer client id 7 is the client "7" (as ``str(7)``), never "007"."""
    flag_client(app, host, client_id="7")
    flag_client(app, host, client_id="008")
    later = datetime.now(UTC) + timedelta(days=1)
    rows = [Row(1, 7, later), Row(2, 8, later), Row(3, 9, later), Row(4, "008", later)]
    host.login("admin")
    with app.test_request_context():
        page = render_template_string(
            "{% set badges = recovery_badges(rows) %}{% for row in rows %}"
            "<li>{{ row.id }}:{% if row.id in badges %}{{ badges[row.id] }}{% endif %}|{{ badges[row.id] }}</li>"
            "{% endfor %}{% for row in rows %}<p>{{ recovery_badge(row) }}</p>{% endfor %}",
            rows=rows,
        )
    shown = re.findall(r"<li>(\d):(.*?)\|(.*?)</li>", page, re.S)
    assert [(n, "data-recovery-flag" in a, a == b) for n, a, b in shown] == [
        ("1", True, True),
        ("2", False, True),
        ("3", False, True),
        ("4", True, True),
    ]
    each = re.findall(r"<p>(.*?)</p>", page, re.S)
    assert ["data-recovery-flag" in p for p in each] == [True, False, False, True]
    assert 'href="/recovery/clients/7?booking=1"' in page and 'href="/recovery/clients/008?booking=4"' in page


def test_a_flag_added_in_this_request_and_not_yet_flushed_shows(app, host):
    """The badges read on the session's own connection, after its autoflush."""
    upcoming(host, "b5", client_id="c5")
    host.login("admin")
    with app.test_request_context():
        app.db.session.add(Flag(client_id="c5", type="vip", reason="Added a moment ago", source="manual"))
        drawn = app.recovery.badges([host.bookings["b5"]])
        assert "Added a moment ago" in drawn["b5"]
        app.db.session.rollback()


def test_a_list_of_ids_rows_and_bookings_together(app, host):
    flag_client(app, host)
    upcoming(host, "b1")
    upcoming(host, "12")
    upcoming(host, "b3", client_id="c3")
    later = datetime.now(UTC) + timedelta(days=1)
    host.login("admin")
    with app.test_request_context():
        drawn = app.recovery.badges(["b1", host.bookings["12"], Row(77, "c1", later), "b3", "nope"])
        assert all('data-recovery-flag="vip"' in drawn[key] for key in ("b1", "12", 12, 77, "77"))
        assert 12 in drawn and "77" in drawn  # the host's int row.id finds its Booking's badge
        assert drawn["b3"] == drawn["nope"] == drawn[78] == "" and "b3" not in drawn and 78 not in drawn
        assert "".join(drawn[key] for key in ("b1", "12", 77)).count("recovery.css") == 1
