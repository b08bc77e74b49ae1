"""The KPI journal's figures, computed by aggregate SQL in a constant number of queries.

:func:`journal` answers, for one period (local dates in ``RECOVERY_TIMEZONE``) and
optionally one location or category: incidents per week (and per month) by category,
the median and 90th percentile of the minutes from the visit's end to recognition and to
resolution, open cases by age, compensation spend per month against
``RECOVERY_MONTHLY_BUDGET``, the check-in answer rate and share of "all good", and the
return rate of clients with and without an incident.

How it stays constant (seven queries, whatever the number of rows):

- **Weeks and months in the business's time zone.** The local week and month
  boundaries of the period are computed in Python (``zoneinfo``, so daylight-saving
  changes are exact) and turned into UTC instants; a nested ``CASE WHEN recorded_at <
  b_mid THEN (...) ELSE (...) END`` (a binary search over the boundaries) assigns each
  row its bucket inside the database, on both backends, and ``GROUP BY`` counts.
  Nothing is read row by row in Python.
- **Percentiles.** PostgreSQL: ``percentile_cont(0.5 | 0.9) WITHIN GROUP (ORDER BY
  seconds)``. SQLite has no percentile aggregate, so one query numbers the values with
  ``row_number() OVER (PARTITION BY measure ORDER BY seconds)`` and keeps only the (at
  most two) rows around each wanted position; the same linear interpolation as
  ``percentile_cont`` is then done on those few rows. Positions use integer arithmetic
  (``9 * (n - 1) / 10``), so both backends give identical results.
- **Return rates** are one query over incidents and visits, reading each row's next visit
  instead of joining later visits (see :func:`_returns`).

Client-conduct cases (abuse of staff) are not service failures: the speed figures and
the return rate leave them out unless the journal is filtered to that category.

The figures read only ids, times, categories, amounts, statuses and answers, which
``forget-client`` keeps; an erasure therefore never changes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Float, Integer, and_, case, cast, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from ..config import CONDUCT_CATEGORY, category_keys, key
from ..entities import Staff
from ..errors import InvalidInput, NotFound
from ..i18n import gettext as _
from ..models import Compensation, FollowUp, Incident, UTCDateTime, Visit, check_database, utcnow
from .incidents import require_permission
from .stats_tables import Table, csv_cell, tables, to_csv
from .visits import sync_visits

#: The default period: this many days, ending today (local).
DEFAULT_DAYS = 90
#: The longest period the journal draws (two years and a day for a leap year).
MAX_DAYS = 731
#: Return-rate windows, in days after the visit.
RETURN_WINDOWS = (30, 60, 90)
#: Open cases by age: (key, lower bound in days); the last bucket has no upper bound.
AGE_BUCKETS = (("under_1_day", 0), ("1_3_days", 1), ("3_7_days", 3), ("7_30_days", 7), ("over_30_days", 30))
#: Percentiles as (name, numerator, denominator): exact integer positions on every backend.
PERCENTILES = (("median", 1, 2), ("p90", 9, 10))
#: What a CSV download or ``flask recovery stats --figure`` can ask for.
FIGURES = ("weekly", "monthly", "speed", "open_cases", "spend", "followups", "returns")

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- the period -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The journal's filter: local dates ``since``..``until`` (both included), location, category."""

    since: date
    until: date
    timezone: str
    location: str | None = None
    category: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_midnight(self, day: date) -> datetime:
        """The UTC instant at which ``day`` begins in the business's time zone."""
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    @property
    def start(self) -> datetime:
        """The first instant of the period (UTC)."""
        return self.local_midnight(self.since)

    @property
    def end(self) -> datetime:
        """The first instant after the period (UTC)."""
        return self.local_midnight(self.until + timedelta(days=1))

    def weeks(self) -> list[date]:
        """The Mondays of the local weeks the period touches (the first and last may be partial)."""
        monday = self.since - timedelta(days=self.since.weekday())
        weeks = []
        while monday <= self.until:
            weeks.append(monday)
            monday += timedelta(days=7)
        return weeks

    def months(self) -> list[date]:
        """The first days of the local calendar months the period touches."""
        first = self.since.replace(day=1)
        months = []
        while first <= self.until:
            months.append(first)
            first = (first + timedelta(days=32)).replace(day=1)
        return months

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "timezone": self.timezone,
            "location": self.location,
            "category": self.category,
        }


def local_today(now: datetime | None = None) -> date:
    """Today's date in ``RECOVERY_TIMEZONE``."""
    return (now or utcnow()).astimezone(ZoneInfo(current_app.config[key("TIMEZONE")])).date()


def parse_date(value: Any, field_name: str) -> date | None:
    """A ``YYYY-MM-DD`` date, ``None`` when empty, or :class:`InvalidInput` naming the field."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = value.strip() if isinstance(value, str) else ""
    try:
        if not _DATE_RE.match(text):
            raise ValueError
        parsed = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(_("Enter a date like 2026-03-31."), field=field_name) from None
    if not 2000 <= parsed.year <= 2100:
        raise InvalidInput(_("Enter a date between the years 2000 and 2100."), field=field_name)
    return parsed


def make_period(
    since: Any = None,
    until: Any = None,
    *,
    location: Any = None,
    category: Any = None,
    staff: Staff | None = None,
    now: datetime | None = None,
) -> Period:
    """Validate the journal's filter and return a :class:`Period`.

    Empty dates default to the last :data:`DEFAULT_DAYS` days up to today (local). A
    staff member with a location is held to it (another location is a 404). Raises
    :class:`InvalidInput` naming ``since``, ``until``, ``location`` or ``category``.
    """
    config = current_app.config
    until_date = parse_date(until, "until")
    since_date = parse_date(since, "since")
    if until_date is None:
        until_date = local_today(now)
        if since_date is not None and since_date > until_date:
            until_date = since_date
    if since_date is None:
        since_date = until_date - timedelta(days=DEFAULT_DAYS - 1)
    if since_date > until_date:
        raise InvalidInput(_("The start must not be after the end."), field="since")
    if (until_date - since_date).days + 1 > MAX_DAYS:
        raise InvalidInput(_("Choose a period of at most two years."), field="until")

    if isinstance(location, str):
        location = location.strip() or None
    if location is not None and (
        not isinstance(location, str) or len(location) > 64 or any(ord(ch) < 0x20 for ch in location)
    ):
        raise InvalidInput(_("Choose a location from the list."), field="location")
    if staff is not None and staff.location is not None:
        if location is not None and location != staff.location:
            raise NotFound(_("No such location."))
        location = staff.location

    if isinstance(category, str):
        category = category.strip() or None
    if category is not None and category not in category_keys(config):
        raise InvalidInput(_("Choose a category from the list."), field="category")
    return Period(since_date, until_date, config[key("TIMEZONE")], location, category)


# -- SQL helpers ----------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return check_database(session.get_bind().dialect.name)


def _seconds(dialect: str, later, earlier):
    """Whole seconds from ``earlier`` to ``later`` as an SQL expression."""
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", later - earlier)), Float)
    return cast(func.strftime("%s", later), Integer) - cast(func.strftime("%s", earlier), Integer)


def _not_negative(dialect: str, expr):
    return func.greatest(expr, 0) if dialect == "postgresql" else func.max(expr, 0)


def _bucket(column, boundaries: list[datetime], offset: int = 0):
    """``0`` for values before ``boundaries[0]``, ``1`` before ``boundaries[1]``, ... as SQL.

    A nested ``CASE`` that halves the range at each level (a binary search), so a row is
    compared with about log2(n) boundaries, not n: 53 weeks cost six comparisons.
    """
    if not boundaries:
        return literal(offset, Integer)
    middle = len(boundaries) // 2
    return case(
        (column < boundaries[middle], _bucket(column, boundaries[:middle], offset)),
        else_=_bucket(column, boundaries[middle + 1 :], offset + middle + 1),
    )


def _at(moment: datetime):
    return literal(moment, UTCDateTime())


def _incident_filter(period: Period, *, failures_only: bool = False) -> list:
    conditions = [Incident.recorded_at >= period.start, Incident.recorded_at < period.end]
    if period.location is not None:
        conditions.append(Incident.location == period.location)
    if period.category is not None:
        conditions.append(Incident.category == period.category)
    elif failures_only:
        conditions.append(Incident.conduct.is_(False))
    return conditions


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# -- the figures ----------------------------------------------------------------------------


def journal(session: Session, period: Period, *, now: datetime | None = None, staff: Staff | None = None) -> dict:
    """All the journal's figures for ``period`` as JSON-ready data (seven queries).

    With ``staff``, checks ``journal.view`` first (401/403). ``now`` (default: the current
    time) dates the open cases' ages and decides which return windows have passed.
    """
    if staff is not None:
        require_permission(staff, "journal.view")
    now = now or utcnow()
    weekly, monthly, by_category = _incidents(session, period)
    data = {
        "period": period.to_dict(),
        "generated_at": now.isoformat(),
        "currency": current_app.config[key("CURRENCY")],
        "incidents": {
            "total": sum(by_category.values()),
            "by_category": by_category,
            "categories": _ordered_categories(by_category),
            "weeks": weekly,
            "months": monthly,
        },
        "speed": _speed(session, period),
        "open_cases": _open_cases(session, period, now),
        "spend": _spend(session, period),
        "followups": _followups(session, period),
        "returns": _returns(session, period, now),
    }
    return data


def _ordered_categories(by_category: dict[str, int]) -> list[str]:
    """Categories with incidents, in the catalogue's order (unknown old keys last)."""
    known = category_keys(current_app.config)
    present = [c for c in known if by_category.get(c)]
    return present + sorted(c for c in by_category if c not in known and by_category[c])


def _incidents(session: Session, period: Period) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Incidents per local week and per local month, by category: one GROUP BY query."""
    weeks, months = period.weeks(), period.months()
    week_bounds = [period.local_midnight(monday) for monday in weeks[1:]]
    month_bounds = [period.local_midnight(first) for first in months[1:]]
    inner = (
        select(
            _bucket(Incident.recorded_at, week_bounds).label("week"),
            _bucket(Incident.recorded_at, month_bounds).label("month"),
            Incident.category.label("category"),
        )
        .where(*_incident_filter(period))
        .subquery()
    )
    rows = session.execute(
        select(inner.c.week, inner.c.month, inner.c.category, func.count()).group_by(
            inner.c.week, inner.c.month, inner.c.category
        )
    ).all()
    per_week: list[dict[str, int]] = [{} for _ in weeks]
    per_month: list[dict[str, int]] = [{} for _ in months]
    by_category: dict[str, int] = {}
    for week, month, category, count in rows:  # at most weeks x months x categories groups
        per_week[int(week)][category] = per_week[int(week)].get(category, 0) + count
        per_month[int(month)][category] = per_month[int(month)].get(category, 0) + count
        by_category[category] = by_category.get(category, 0) + count
    weekly = [
        {"week": monday.isoformat(), "counts": counts, "total": sum(counts.values())}
        for monday, counts in zip(weeks, per_week, strict=True)
    ]
    monthly = [
        {"month": first.strftime("%Y-%m"), "counts": counts, "total": sum(counts.values())}
        for first, counts in zip(months, per_month, strict=True)
    ]
    return weekly, monthly, by_category


def _speed(session: Session, period: Period) -> dict[str, dict]:
    """Median and 90th percentile minutes from the visit's end to recognition and to resolution."""
    dialect = _dialect(session)
    conditions = _incident_filter(period, failures_only=True)
    recognition = _not_negative(dialect, _seconds(dialect, Incident.recorded_at, Incident.visit_ended_at))
    resolved = and_(Incident.status.in_(("resolved", "closed")), Incident.resolved_at.is_not(None))
    resolution = _not_negative(dialect, _seconds(dialect, Incident.resolved_at, Incident.visit_ended_at))
    result: dict[str, dict] = {}
    if dialect == "postgresql":
        columns = [func.count()]
        for _name, num, den in PERCENTILES:
            columns.append(func.percentile_cont(num / den).within_group(recognition))
        columns.append(func.count().filter(resolved))
        for _name, num, den in PERCENTILES:
            columns.append(func.percentile_cont(num / den).within_group(resolution).filter(resolved))
        row = session.execute(select(*columns).where(*conditions)).one()
        n = len(PERCENTILES)
        for index, measure in enumerate(("recognition", "resolution")):
            values = row[index * (n + 1) : (index + 1) * (n + 1)]
            result[measure] = {"cases": int(values[0] or 0)}
            for (name, _num, _den), seconds in zip(PERCENTILES, values[1:], strict=True):
                result[measure][f"{name}_minutes"] = _minutes(seconds)
        return result

    # SQLite: number the values per measure, keep the rows around each wanted position.
    data = union_all(
        select(literal("recognition").label("measure"), recognition.label("seconds")).where(*conditions),
        select(literal("resolution").label("measure"), resolution.label("seconds")).where(*conditions, resolved),
    ).subquery()
    ranked = select(
        data.c.measure,
        data.c.seconds,
        (func.row_number().over(partition_by=data.c.measure, order_by=data.c.seconds) - 1).label("rn"),
        func.count().over(partition_by=data.c.measure).label("n"),
    ).subquery()
    wanted = []
    for _name, num, den in PERCENTILES:
        low = (num * (ranked.c.n - 1)) // den  # integer division: the floor of the position
        wanted += [ranked.c.rn == low, ranked.c.rn == low + 1]
    rows = session.execute(
        select(ranked.c.measure, ranked.c.n, ranked.c.rn, ranked.c.seconds).where(
            (ranked.c.rn == 0) | wanted[0] | wanted[1] | wanted[2] | wanted[3]
        )
    ).all()
    found: dict[str, dict[str, Any]] = {"recognition": {"n": 0, "at": {}}, "resolution": {"n": 0, "at": {}}}
    for measure, n, rn, seconds in rows:
        found[measure]["n"] = n
        found[measure]["at"][rn] = seconds
    for measure, info in found.items():
        n, at = info["n"], info["at"]
        result[measure] = {"cases": n}
        for name, num, den in PERCENTILES:
            if not n:
                result[measure][f"{name}_minutes"] = None
                continue
            low, rest = divmod(num * (n - 1), den)
            value = at[low] if not rest else at[low] + (at[low + 1] - at[low]) * rest / den
            result[measure][f"{name}_minutes"] = _minutes(value)
    return result


def _minutes(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) / 60, 1)


def _open_cases(session: Session, period: Period, now: datetime) -> dict:
    """Cases open (or reopened) right now, by age since they were recorded.

    A snapshot at ``now``: the period does not apply (an old open case matters most),
    the location and category do.
    """
    bounds = [now - timedelta(days=days) for _key, days in reversed(AGE_BUCKETS[1:])]
    conditions = [Incident.status.in_(("open", "reopened"))]
    if period.location is not None:
        conditions.append(Incident.location == period.location)
    if period.category is not None:
        conditions.append(Incident.category == period.category)
    inner = (
        select(_bucket(Incident.recorded_at, bounds).label("bucket"), Incident.recorded_at)
        .where(*conditions)
        .subquery()
    )
    rows = session.execute(
        select(inner.c.bucket, func.count(), func.min(inner.c.recorded_at)).group_by(inner.c.bucket)
    ).all()
    # bucket 0 is the oldest (before now - 30 days): reverse to youngest first.
    counts = {int(bucket): count for bucket, count, _oldest in rows}
    oldest = min((when for _b, _c, when in rows if when is not None), default=None)
    buckets = [
        {"bucket": name, "cases": counts.get(len(AGE_BUCKETS) - 1 - index, 0)}
        for index, (name, _d) in enumerate(AGE_BUCKETS)
    ]
    return {
        "total": sum(counts.values()),
        "buckets": buckets,
        "oldest_days": None if oldest is None else round((now - oldest).total_seconds() / 86400, 1),
    }


def _spend(session: Session, period: Period) -> dict:
    """Granted compensation per budget month (the month it was charged in), against the plan.

    Whole calendar months are shown, as the budget is monthly: every month the period
    touches, including the parts outside it.
    """
    months = [first.strftime("%Y-%m") for first in period.months()]
    stmt = select(Compensation.charged_month, func.count(), func.coalesce(func.sum(Compensation.amount), 0)).where(
        Compensation.status == "granted",
        Compensation.charged_month >= months[0],
        Compensation.charged_month <= months[-1],
    )
    if period.location is not None:
        stmt = stmt.where(Compensation.location == period.location)
    if period.category is not None:
        stmt = stmt.join(Incident, Incident.id == Compensation.incident_id).where(Incident.category == period.category)
    found = {
        month: (count, int(total)) for month, count, total in session.execute(stmt.group_by(Compensation.charged_month))
    }
    budget = current_app.config[key("MONTHLY_BUDGET")]
    rows = []
    for month in months:
        grants, spent = found.get(month, (0, 0))
        rows.append(
            {
                "month": month,
                "grants": grants,
                "spent": spent,
                "budget": budget,
                "left": None if budget is None else budget - spent,
                "share": _rate(spent, budget) if budget else None,
            }
        )
    return {"budget": budget, "total": sum(r["spent"] for r in rows), "months": rows}


def _followups(session: Session, period: Period) -> dict:
    """Check-ins sent in the period; how many were answered (by them or their reminder), how many "all good"."""
    answer = aliased(FollowUp)
    stmt = (
        select(
            func.count(FollowUp.id),
            func.count(answer.id),
            func.coalesce(func.sum(case((answer.answer == "good", 1), else_=0)), 0),
        )
        .select_from(FollowUp)
        .outerjoin(answer, and_(answer.booking_id == FollowUp.booking_id, answer.answer.is_not(None)))
        .where(
            FollowUp.kind == "checkin",
            FollowUp.sent_at.is_not(None),
            FollowUp.sent_at >= period.start,
            FollowUp.sent_at < period.end,
        )
    )
    if period.location is not None:
        stmt = stmt.where(FollowUp.location == period.location)
    if period.category is not None:
        stmt = stmt.join(Incident, Incident.id == FollowUp.incident_id).where(Incident.category == period.category)
    sent, answered, good = (int(v or 0) for v in session.execute(stmt).one())
    return {
        "sent": sent,
        "answered": answered,
        "good": good,
        "not_right": answered - good,
        "answer_rate": _rate(answered, sent),
        "good_share": _rate(good, answered),
    }


def _returns(session: Session, period: Period, now: datetime) -> dict:
    """The share of clients who booked again within 30/60/90 days, with and without an incident.

    *With an incident*: clients with a service-failure incident recorded in the period;
    her reference is the end of the earliest such visit. *Without*: clients with a
    completed visit ending in the period and no incident of any kind in it; her reference
    is the end of her first such visit. She *booked again within N days* when a later
    visit of hers (any status but ``cancelled``) starts within N days of the reference.
    A client counts for a window only once its N days have passed by ``now``. With a
    location, visits at that location only. Needs the host's visits in
    ``recovery_visits`` (``booking_created`` / ``visit_completed`` calls, or
    :func:`sync_visits` from the ``bookings_between`` loader).

    One pass over the period's incidents and visits, without a join to later visits:
    each row carries the start of the client's next visit (``next_visit_at``, kept by
    ``visits.refresh_next_visits``). The next visit after a moment can only come later
    when the moment is later, so the next visit after her *earliest* incident is the
    smallest ``next_visit_at`` among her incidents: a plain ``min()`` per client. Her
    first completed visit of the period is the one whose previous completed visit
    (``previous_end_at``) ended before the period: a filter, no grouping of visits.
    """
    dialect = _dialect(session)
    here = period.location is not None
    # A client whose shortest window has not passed yet counts nowhere: leave her out early.
    settled = _at(now - timedelta(days=min(RETURN_WINDOWS)))
    incident_next = Incident.next_visit_here_at if here else Incident.next_visit_at
    with_incident = (
        select(func.min(Incident.visit_ended_at).label("t0"), func.min(incident_next).label("back_at"))
        .where(*_incident_filter(period, failures_only=True))
        .group_by(Incident.client_id)
        .having(func.min(Incident.visit_ended_at) <= settled)
    )
    had_any = exists().where(
        Incident.client_id == Visit.client_id,
        Incident.recorded_at >= period.start,
        Incident.recorded_at < period.end,
    )
    # Her first completed visit of the period: the one whose previous one ended before the period.
    previous = Visit.previous_here_end_at if here else Visit.previous_end_at
    without = select(
        Visit.ends_at.label("t0"), (Visit.next_visit_here_at if here else Visit.next_visit_at).label("back_at")
    ).where(
        Visit.status == "completed",
        Visit.ends_at >= period.start,
        Visit.ends_at < period.end,
        Visit.ends_at <= settled,
        or_(previous.is_(None), previous < period.start),
        ~had_any,
    )
    if here:
        without = without.where(Visit.location == period.location)
    # A client is in one group at most (with: a failure in the period; without: no incident in it).
    refs = union_all(_labelled(with_incident, 1), _labelled(without, 0)).subquery()
    gap = _seconds(dialect, refs.c.back_at, refs.c.t0)
    columns = [refs.c.grp]
    for days in RETURN_WINDOWS:
        passed = refs.c.t0 <= _at(now - timedelta(days=days))
        columns.append(func.coalesce(func.sum(case((passed, 1), else_=0)), 0))
        columns.append(
            func.coalesce(
                func.sum(case((and_(passed, refs.c.back_at.is_not(None), gap <= days * 86400), 1), else_=0)), 0
            )
        )
    rows = {row[0]: row[1:] for row in session.execute(select(*columns).group_by(refs.c.grp)).all()}
    rows = {name: rows[code] for name, code in (("with_incident", 1), ("without_incident", 0)) if code in rows}

    known = select(func.count()).select_from(Visit).where(Visit.starts_at >= period.start, Visit.starts_at < period.end)
    if period.location is not None:
        known = known.where(Visit.location == period.location)
    visits_known = session.scalar(known) or 0

    result: dict[str, Any] = {"visits_known": visits_known, "windows": list(RETURN_WINDOWS)}
    for group in ("with_incident", "without_incident"):
        values = rows.get(group, (0,) * (2 * len(RETURN_WINDOWS)))
        result[group] = {}
        for index, days in enumerate(RETURN_WINDOWS):
            clients, returned = int(values[2 * index]), int(values[2 * index + 1])
            result[group][str(days)] = {"clients": clients, "returned": returned, "rate": _rate(returned, clients)}
    return result


def _labelled(stmt, group: int):
    sub = stmt.subquery()
    return select(literal(group, Integer).label("grp"), sub.c.t0, sub.c.back_at)


def locations(session: Session) -> list[str]:
    """The locations that have incidents, for the journal's filter (one query)."""
    stmt = select(Incident.location).where(Incident.location.is_not(None)).distinct().order_by(Incident.location)
    return list(session.scalars(stmt))


__all__ = [
    "CONDUCT_CATEGORY",
    "DEFAULT_DAYS",
    "FIGURES",
    "MAX_DAYS",
    "Period",
    "RETURN_WINDOWS",
    "Table",
    "csv_cell",
    "journal",
    "locations",
    "make_period",
    "parse_date",
    "sync_visits",
    "tables",
    "to_csv",
]
