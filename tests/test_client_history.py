"""The booking page shows the client's earlier incidents, in a constant number of queries."""

import sqlalchemy as sa
from sqlalchemy import event

from flask_recovery import domain


def _seed_history(app, host, count):
    staff = host.login("admin")
    with app.app_context():
        for n in range(count):
            booking = host.add_booking(f"old{n}")
            domain.record_incident(
                app.db.session, booking, staff, category="late", severity="minor", description=f"late #{n}"
            )
    host.add_booking("b1")


def _count_queries(app, client, url):
    statements = []
    with app.app_context():
        engine = app.db.engine

    def before(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        response = client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert response.status_code == 200
    return response, [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT"))]


def test_earlier_incidents_are_summarised(app, client, host):
    _seed_history(app, host, 7)
    html = client.get("/recovery/bookings/b1").text
    assert "This client before" in html
    assert "7 earlier incidents on other visits." in html
    assert html.count("Late start · Minor") == 5
    other = client.get("/recovery/bookings/old0").text
    assert "6 earlier incidents on other visits." in other


def test_queries_do_not_grow_with_history(app, client, host):
    _seed_history(app, host, 1)
    _, few = _count_queries(app, client, "/recovery/bookings/b1")
    _seed_history(app, host, 60)
    response, many = _count_queries(app, client, "/recovery/bookings/b1")
    assert "61 earlier incidents on other visits." in response.text
    assert len(many) == len(few), (few, many)


def test_first_incident_shows_no_history_block(client, host, app):
    host.add_booking("b1")
    host.login("admin")
    assert "This client before" not in client.get("/recovery/bookings/b1").text
    assert sa is not None
