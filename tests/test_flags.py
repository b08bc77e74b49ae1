"""Flags for the next visit: set, shown on the next booking, seen, used up, expired, lifted;
conduct against VIP; booking_created / visit_completed; may_book and booking holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flask_recovery import domain
from flask_recovery.domain import flags
from flask_recovery.errors import Conflict, InvalidInput, NotAllowed, NotAuthenticated, NotFound
from flask_recovery.models import AuditEntry, Flag, Visit


def next_booking(host, booking_id="b2", days=7, **overrides):
    """A later booking of the same client (``c1``), still to come."""
    now = datetime.now(UTC).replace(microsecond=0)
    values = dict(starts_at=now + timedelta(days=days), ends_at=now + timedelta(days=days, hours=1), status="booked")
    values.update(overrides)
    return host.add_booking(booking_id, **values)


def record(session, host, booking, *, who="admin", **fields):
    values = dict(category="late", severity="major", description="Master started 25 minutes late.")
    values.update(fields)
    incident = domain.record_incident(session, booking, host.login(who), **values)
    session.commit()  # the host's commit: the rules only flush
    return incident


def actions(session):
    session.expire_all()
    return [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]


def test_an_incident_flags_the_client_vip_with_a_reason_a_colleague_understands(
    app, session, host, booking, signal_log
):
    incident = record(session, host, booking, corrective_action="A buffer after long services")
    flag = session.query(Flag).one()
    assert (flag.type, flag.status, flag.source) == ("vip", "active", "incident")
    assert (flag.client_id, flag.booking_id, flag.incident_id) == ("c1", "b1", incident.id)
    assert (flag.set_by, flag.set_by_name, flag.location) == ("s-admin", "Irina", "center")
    assert flag.created_at == incident.recorded_at
    assert flag.expires_at == flag.created_at + timedelta(days=90)
    assert flag.reason == (
        "Last visit: Late start (major): Master started 25 minutes late. "
        "Start on time; greet the client by name and offer a compliment."
    )
    # the booking became a visit the extension knows (ids and times only)
    visit = session.get(Visit, "b1")
    assert (visit.client_id, visit.status, visit.starts_at) == ("c1", "completed", booking.starts_at)
    assert actions(session) == ["incident.recorded", "flag.set"]
    assert [name for name, _ in signal_log] == ["incident_recorded", "client_flagged"]
    assert signal_log[1][1]["flag"].id == flag.id and signal_log[1][1]["cause"] == "set"


def test_the_reason_takes_in_the_remedy_granted(app, client, session, host, booking):
    incident = record(session, host, booking)
    response = client.post(
        f"/recovery/api/incidents/{incident.id}/compensations", json={"kind": "percent_discount", "percent": 15}
    )
    assert response.status_code == 201
    session.expire_all()
    assert "Given: 15% off the next visit." in session.query(Flag).one().reason
    client.post(f"/recovery/api/incidents/{incident.id}/compensations", json={"kind": "gift", "amount": 50000})
    session.expire_all()
    assert "Given: 15% off the next visit; a compliment worth €500.00." in session.query(Flag).one().reason


def test_the_reason_is_written_in_the_language_of_the_desk(app, session, host, booking):
    from flask_babel import force_locale

    from flask_recovery.vocabulary import category_label

    with force_locale("ru"):
        record(session, host, booking, category="result", severity="critical", description="Цвет рыжий")
        label = category_label("result")
    reason = session.query(Flag).one().reason
    assert label != "Result not as agreed" and label in reason
    assert "Цвет рыжий" in reason


def test_shown_on_every_later_booking_until_the_next_visit_uses_it_up(app, session, host, booking):
    record(session, host, booking)
    later = next_booking(host, "b2")
    much_later = next_booking(host, "b3", days=30)
    assert flags.flags_for_booking(session, booking) == []  # not on the booking it was set on
    assert [f.type for f in flags.flags_for_booking(session, later)] == ["vip"]
    assert [f.type for f in flags.flags_for_booking(session, much_later)] == ["vip"]

    used = app.recovery.visit_completed("b2")
    assert [f.status for f in used] == ["used"] and used[0].used_booking_id == "b2"
    assert flags.flags_for_booking(session, much_later) == []
    assert app.recovery.client_flags("c1") == []
    assert app.recovery.visit_completed("b2") == []  # once only
    assert actions(session).count("flag.used") == 1
    assert session.get(Visit, "b2").status == "completed" and session.get(Visit, "b2").completed_at is not None


def test_the_visit_it_was_set_on_and_earlier_visits_do_not_use_it_up(app, session, host, booking):
    now = datetime.now(UTC)
    earlier = host.add_booking("b0", starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=3, hours=-1))
    record(session, host, booking)
    assert app.recovery.visit_completed("b1") == []  # checkout of the visit where it went wrong
    assert app.recovery.visit_completed("b0") == []  # a visit that ended before the flag was set
    assert [f.status for f in session.query(Flag)] == ["active"]
    assert flags.flags_for_booking(session, earlier) == []


def test_acknowledged_on_the_next_booking(app, session, host, booking):
    record(session, host, booking)
    later = next_booking(host)
    flag = flags.flags_for_booking(session, later)[0]
    seen = flags.acknowledge_flag(
        session, flag.id, host.login("master"), note="Seen, compliment offered", booking=later
    )
    assert (seen.acknowledged_by, seen.acknowledged_by_name, seen.acknowledgement) == (
        "s-master",
        "Olga",
        "Seen, compliment offered",
    )
    assert seen.acknowledged_at is not None and seen.status == "active"  # still shown until the visit
    entry = session.query(AuditEntry).filter_by(action="flag.acknowledged").one()
    assert (entry.booking_id, entry.subject_id, entry.actor_id, entry.data) == ("b2", str(flag.id), "s-master", None)
    with pytest.raises(Conflict, match="Olga has already marked this flag as seen"):
        flags.acknowledge_flag(session, flag.id, host.login("admin"))


def test_acknowledging_on_another_clients_booking_is_refused(app, session, host, booking):
    record(session, host, booking)
    other = host.add_booking("x1", client_id="c2")
    flag = session.query(Flag).one()
    with pytest.raises(InvalidInput) as error:
        flags.acknowledge_flag(session, flag.id, host.login("admin"), booking=other)
    assert error.value.field == "booking_id"


def test_expires_after_vip_days(app, session, host, booking):
    long_ago = datetime.now(UTC) - timedelta(days=91)
    record(session, host, booking, now=long_ago)
    flag = session.query(Flag).one()
    assert flag.expires_at == long_ago + timedelta(days=90)
    assert flags.state_of(flag) == "expired" and flag.status == "active"
    later = next_booking(host)
    assert flags.flags_for_booking(session, later) == []
    assert app.recovery.visit_completed("b2") == []  # nothing left to use up
    with pytest.raises(Conflict):
        flags.lift_flag(session, flag.id, host.login("manager"), reason="old")


@pytest.mark.config(RECOVERY_VIP_DAYS=3)
def test_vip_days_is_read_from_the_config(app, session, host, booking):
    record(session, host, booking)
    flag = session.query(Flag).one()
    assert flag.expires_at - flag.created_at == timedelta(days=3)


def test_lifted_by_a_manager_with_a_reason(app, session, host, booking):
    record(session, host, booking)
    flag = session.query(Flag).one()
    with pytest.raises(NotAllowed):
        flags.lift_flag(session, flag.id, host.login("admin"), reason="no")
    with pytest.raises(InvalidInput) as error:
        flags.lift_flag(session, flag.id, host.login("manager"), reason="  ")
    assert error.value.field == "reason"
    lifted = flags.lift_flag(session, flag.id, host.login("manager"), reason="She asked us not to fuss")
    assert (lifted.status, lifted.lifted_by, lifted.lift_reason) == ("lifted", "s-manager", "She asked us not to fuss")
    assert flags.flags_for_booking(session, next_booking(host)) == []
    with pytest.raises(Conflict, match="no longer active"):
        flags.lift_flag(session, flag.id, host.login("manager"), reason="again")
    assert actions(session)[-1] == "flag.lifted"
    # the audit trail has ids, not the manager's words
    entry = session.query(AuditEntry).filter_by(action="flag.lifted").one()
    assert "fuss" not in repr(entry.data)


def test_conduct_flags_a_warning_never_a_vip_and_wins_on_display(app, session, host, booking):
    record(session, host, booking)  # an earlier slip of ours: vip
    record(session, host, booking, category="client_conduct", severity="critical", description="Shouted at Olga")
    kinds = sorted(f.type for f in session.query(Flag))
    assert kinds == ["conduct", "vip"]
    conduct = session.query(Flag).filter_by(type="conduct").one()
    assert "Shouted" not in conduct.reason  # the note itself stays on the incident
    assert conduct.reason.startswith("Conduct warning: abuse of staff on the client's last visit (critical).")
    later = next_booking(host)
    assert flags.display_type(flags.flags_for_booking(session, later)) == "conduct"
    # a master reads the warning, not a manager's note
    assert flags.shown_reason(conduct, show_conduct=False) == str(flags.CONDUCT_NOTICE)


def test_a_manager_sets_a_flag_by_hand(app, session, host, booking, signal_log):
    record(session, host, booking)
    later = next_booking(host)
    manager = host.login("manager")
    flag = flags.set_flag(session, "c1", manager, type="conduct", reason="Threatened the master by phone", days=10)
    assert (flag.source, flag.type, flag.set_by, flag.booking_id) == ("manual", "conduct", "s-manager", None)
    assert flag.expires_at - flag.created_at == timedelta(days=10)
    assert flags.display_type(flags.flags_for_booking(session, later)) == "conduct"
    assert signal_log[-1][0] == "client_flagged" and signal_log[-1][1]["staff"] == manager
    assert actions(session)[-1] == "flag.set"
    for bad, field in [
        ({"type": "gold", "reason": "x"}, "type"),
        ({"type": "vip", "reason": ""}, "reason"),
        ({"type": "vip", "reason": "x", "days": 0}, "days"),
        ({"type": "vip", "reason": "x", "days": "7"}, "days"),
        ({"type": "vip", "reason": "x\x00"}, "reason"),
    ]:
        with pytest.raises(InvalidInput) as error:
            flags.set_flag(session, "c1", manager, **bad)
        assert error.value.field == field
    with pytest.raises(NotFound):
        flags.set_flag(session, "nobody", manager, type="vip", reason="x")
    with pytest.raises(NotAllowed):
        flags.set_flag(session, "c1", host.login("admin"), type="vip", reason="x")
    with pytest.raises(NotAuthenticated):
        flags.set_flag(session, "c1", None, type="vip", reason="x")


def test_a_flag_set_by_hand_shows_on_her_bookings_still_to_come(app, session, host, booking):
    later = next_booking(host, "b2", location="north")
    flag = flags.set_flag(session, "c1", host.login("manager"), type="vip", reason="Birthday", booking=later)
    assert (flag.booking_id, flag.location) == ("b2", "north")
    assert flags.flags_for_booking(session, booking) == []  # over before it was set
    assert [f.id for f in flags.flags_for_booking(session, later)] == [flag.id]  # the booking she looked at
    assert [f.id for f in app.recovery.visit_completed("b2")] == [flag.id]


def test_booking_created_remembers_the_visit_and_pushes_the_flags(app, session, host, booking, signal_log):
    record(session, host, booking)
    next_booking(host, "b2")
    host.add_booking("other", client_id="c9")
    with app.app_context():
        pushed = app.recovery.booking_created("b2")
        assert [f.type for f in pushed] == ["vip"]
        assert app.recovery.booking_created("other") == []
    assert session.get(Visit, "b2").status == "booked"
    pushes = [kw for name, kw in signal_log if name == "client_flagged" and kw["cause"] == "booking"]
    assert len(pushes) == 1 and pushes[0]["booking"].id == "b2"
    # a later "booked" from the host never undoes a completion it reported
    app.recovery.visit_completed("b2")
    app.recovery.booking_created("b2")
    session.expire_all()
    assert session.get(Visit, "b2").status == "completed"


def test_flags_for_bookings_by_id_and_by_booking(app, session, host, booking):
    record(session, host, booking)
    later = next_booking(host, "b2")
    stranger = host.add_booking("s1", client_id="c2")
    app.recovery.booking_created("b2")  # known to the extension now, like b1 (its incident)
    session.commit()  # the host's commit
    host.loads = 0
    with app.app_context():
        by_id = app.recovery.flags_for_bookings(["b2", "s1", "nope", "b1"])
    assert {k: [f.type for f in v] for k, v in by_id.items()} == {"b2": ["vip"], "s1": [], "nope": [], "b1": []}
    assert host.loads == 2  # s1 and nope came from the host's loader; b1 and b2 are known visits
    with app.app_context():
        by_object = app.recovery.flags_for_bookings([later, stranger])
    assert [f.type for f in by_object["b2"]] == ["vip"] and by_object["s1"] == []


def test_may_book_is_off_unless_a_manager_sets_a_hold(app, session, host, booking):
    incident = record(session, host, booking, category="client_conduct", severity="critical", description="Threats")
    answer = app.recovery.may_book("c1")
    assert answer and answer.allowed and answer.reason is None
    manager = host.login("manager")
    with pytest.raises(NotAllowed):
        flags.set_hold(session, "c1", host.login("admin"), reason="x")
    hold = flags.set_hold(session, "c1", manager, reason="Threatened Olga; bookings by phone", incident_id=incident.id)
    answer = app.recovery.may_book("c1")
    assert not answer and answer.allowed is False
    assert answer.reason == "Threatened Olga; bookings by phone" and answer.hold_id == hold.id
    assert app.recovery.may_book("c2").allowed  # only her
    with pytest.raises(Conflict):
        flags.set_hold(session, "c1", manager, reason="again")
    with pytest.raises(InvalidInput) as error:
        flags.lift_hold(session, "c1", manager, reason="")
    assert error.value.field == "reason"
    lifted = flags.lift_hold(session, "c1", manager, reason="Apologised to Olga")
    assert (lifted.active, lifted.lifted_by, lifted.lift_reason) == (False, "s-manager", "Apologised to Olga")
    assert app.recovery.may_book("c1").allowed
    with pytest.raises(Conflict):
        flags.lift_hold(session, "c1", manager, reason="again")
    assert [a for a in actions(session) if a.startswith("hold.")] == ["hold.set", "hold.lifted"]


def test_a_hold_names_only_the_clients_own_incident(app, session, host, booking):
    other = host.add_booking("x1", client_id="c2")
    theirs = record(session, host, other)
    record(session, host, booking)
    with pytest.raises(InvalidInput) as error:
        flags.set_hold(session, "c1", host.login("manager"), reason="x", incident_id=theirs.id)
    assert error.value.field == "incident_id"


def test_branch_staff_see_active_flags_but_not_other_branches_history(app, session, host, booking):
    record(session, host, booking)  # at the centre
    north = next_booking(host, "n1", location="north")
    nina = host.login("north_admin")
    assert [f.type for f in flags.flags_for_booking(session, north)] == ["vip"]  # the note follows her
    with pytest.raises(NotFound):
        flags.client_in_scope(session, "c1", nina)  # no record of hers at the north branch...
    assert flags.client_in_scope(session, "c1", nina, north) == "c1"  # ...but this booking is
    flag = session.query(Flag).one()
    flags.lift_flag(session, flag.id, host.login("manager"), reason="done")
    app.recovery.booking_created("n1")  # now she has a visit in the north
    with pytest.raises(NotFound):
        flags.get_flag(session, flag.id, nina)  # a lifted centre flag is the centre's history


def test_a_concurrent_second_use_uses_nothing(app, session, host, booking):
    record(session, host, booking)
    next_booking(host, "b2")
    flag = session.query(Flag).one()
    session.execute(Flag.__table__.update().values(status="used"))
    session.commit()
    assert app.recovery.visit_completed("b2") == []
    session.expire_all()
    assert session.get(Flag, flag.id).used_booking_id is None
