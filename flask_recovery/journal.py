"""The KPI journal: a manager's page of figures and charts, and its CSV downloads.

``GET {prefix}/journal`` shows, for a period (default: the last 90 days) and optionally
one location or category, the figures of :mod:`flask_recovery.domain.stats` as SVG
charts with a table of numbers under each. ``GET {prefix}/journal.csv?figure=...``
downloads one figure (or ``all`` in a long format). Both need ``journal.view``
(managers); a manager with a location sees only that location. Nothing changes on GET.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent, get_currency_precision
from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import get_locale

from . import charts
from .config import category_keys, key
from .domain import stats
from .domain.incidents import require_permission
from .errors import InvalidInput
from .i18n import gettext as _
from .i18n import ngettext
from .proxies import get_recovery
from .vocabulary import category_label
from .widgets import format_money

#: The query-string fields of the filter form, in page order.
FILTER_FIELDS = ("since", "until", "location", "category")


def _locale() -> str:
    return str(get_locale() or current_app.config[key("DEFAULT_LOCALE")])


def fmt_int(value: int | None) -> str:
    """A whole number the locale's way (``1,234`` / ``1 234``)."""
    return "—" if value is None else format_decimal(value, locale=_locale())


def fmt_share(value: float | None) -> str:
    """A share as a percentage (``75%``), or a dash when there is nothing to divide."""
    return "—" if value is None else format_percent(value, locale=_locale())


def fmt_duration(minutes: float | None) -> str:
    """Minutes as a manager reads them: ``25 min``, ``3.5 h``, ``2.1 d``."""
    if minutes is None:
        return "—"
    if minutes < 90:
        return _("%(n)s min", n=format_decimal(round(minutes), locale=_locale()))
    if minutes < 48 * 60:
        return _("%(n)s h", n=format_decimal(round(minutes / 60, 1), locale=_locale()))
    return _("%(n)s d", n=format_decimal(round(minutes / 1440, 1), locale=_locale()))


def fmt_week(iso: str) -> str:
    return format_date(date.fromisoformat(iso), "d MMM", locale=_locale())


def fmt_month(month: str) -> str:
    return format_date(date.fromisoformat(month + "-01"), "LLLL yyyy", locale=_locale())


def fmt_day(value: date) -> str:
    return format_date(value, "medium", locale=_locale())


def _money_axis(value: float) -> str:
    currency = current_app.config[key("CURRENCY")]
    major = Decimal(int(value)).scaleb(-get_currency_precision(currency))
    return format_decimal(major, format="#,##0", locale=_locale())


def age_label(bucket: str) -> str:
    """The translated name of an open-case age bucket."""
    return {
        "under_1_day": _("under a day"),
        "1_3_days": _("1 to 3 days"),
        "3_7_days": _("3 to 7 days"),
        "7_30_days": _("1 to 4 weeks"),
        "over_30_days": _("over 30 days"),
    }.get(bucket, bucket)


def group_label(group: str) -> str:
    """The translated name of a return-rate group."""
    return {"with_incident": _("After an incident"), "without_incident": _("No incident")}.get(group, group)


def measure_label(measure: str) -> str:
    return {"recognition": _("To recognition"), "resolution": _("To resolution")}.get(measure, measure)


# -- the charts ---------------------------------------------------------------------------------


def build_charts(data: dict) -> dict[str, Any]:
    """The page's SVG charts and legends from :func:`stats.journal`'s data (no queries)."""
    incidents = data["incidents"]
    categories = incidents["categories"]
    colours = charts.category_colours(categories, category_keys(current_app.config))
    cat_series = {c: charts.Series(c, category_label(c), colours[c]) for c in categories}
    result: dict[str, Any] = {"category_series": list(cat_series.values())}

    # Incidents per week, stacked by category.
    rows = []
    for week in incidents["weeks"]:
        bars = [
            charts.Bar(
                cat_series[c],
                week["counts"].get(c, 0),
                fmt_int(week["counts"].get(c, 0)),
                _("%(category)s: %(count)s", category=cat_series[c].name, count=fmt_int(week["counts"].get(c, 0))),
                {"data-category": c},
            )
            for c in categories
        ]
        rows.append((fmt_week(week["week"]), bars, fmt_int(week["total"])))
    busiest = max(incidents["weeks"], key=lambda w: w["total"], default=None)
    top = max(categories, key=lambda c: incidents["by_category"][c], default=None)
    if incidents["total"]:
        weeks = len(incidents["weeks"])
        desc = _(
            "%(incidents)s in %(weeks)s. Most often: %(category)s (%(count)s). "
            "Busiest week: from %(week)s (%(busiest)s). The numbers are in the table below.",
            incidents=ngettext("%(n)s incident", "%(n)s incidents", incidents["total"], n=fmt_int(incidents["total"])),
            weeks=ngettext("%(n)s week", "%(n)s weeks", weeks, n=fmt_int(weeks)),
            category=cat_series[top].name,
            count=fmt_int(incidents["by_category"][top]),
            week=fmt_week(busiest["week"]),
            busiest=fmt_int(busiest["total"]),
        )
    else:
        desc = _("No incidents in this period.")
    result["weekly"] = charts.stacked_bars(
        "recovery-chart-weekly",
        title=_("Incidents per week by category"),
        desc=desc,
        rows=rows,
        tick_format=lambda v: fmt_int(int(v)),
        kind="weekly",
    )

    # Speed: median and 90th percentile, to recognition and to resolution.
    median = charts.Series("median", _("Median"), "#0072B2")
    p90 = charts.Series("p90", _("90th percentile"), "#882255")
    groups = []
    parts = []
    for measure in ("recognition", "resolution"):
        figures = data["speed"][measure]
        bars = []
        for series, name in ((median, "median_minutes"), (p90, "p90_minutes")):
            value = figures[name]
            bars.append(
                charts.Bar(
                    series,
                    value or 0,
                    fmt_duration(value),
                    f"{series.name}: {fmt_duration(value)}",
                    {"data-measure": measure},
                )
            )
        label = _(
            "%(measure)s (%(cases)s)",
            measure=measure_label(measure),
            cases=ngettext("%(n)s case", "%(n)s cases", figures["cases"], n=fmt_int(figures["cases"])),
        )
        groups.append((label, bars))
        parts.append(
            _(
                "%(measure)s: median %(median)s, 90th percentile %(p90)s.",
                measure=measure_label(measure),
                median=fmt_duration(figures["median_minutes"]),
                p90=fmt_duration(figures["p90_minutes"]),
            )
        )
    result["speed_series"] = [median, p90]
    result["speed"] = charts.grouped_bars(
        "recovery-chart-speed",
        title=_("Time from the visit's end"),
        desc=" ".join(parts),
        groups=groups,
        tick_format=lambda v: fmt_duration(v),
        ticks=charts.duration_ticks(max((b.value for _label, bars in groups for b in bars), default=0)),
        kind="speed",
    )

    # Open cases by age.
    open_series = charts.Series("open", _("Open cases"), "#D55E00")
    open_groups = [
        (
            age_label(b["bucket"]),
            [
                charts.Bar(
                    open_series,
                    b["cases"],
                    fmt_int(b["cases"]),
                    f"{age_label(b['bucket'])}: {fmt_int(b['cases'])}",
                    {"data-bucket": b["bucket"]},
                )
            ],
        )
        for b in data["open_cases"]["buckets"]
    ]
    open_total = data["open_cases"]["total"]
    open_old = data["open_cases"]["buckets"][-1]["cases"]
    result["open_cases"] = charts.grouped_bars(
        "recovery-chart-open",
        title=_("Open cases by age"),
        desc=ngettext("%(n)s case is open now.", "%(n)s cases are open now.", open_total, n=fmt_int(open_total))
        + " "
        + ngettext("%(n)s of them for over 30 days.", "%(n)s of them for over 30 days.", open_old, n=fmt_int(open_old)),
        groups=open_groups,
        tick_format=lambda v: fmt_int(int(v)),
        kind="open_cases",
    )

    # Spend per month against the plan.
    spend = data["spend"]
    within = charts.Series("within", _("Within the plan"), "#0072B2")
    over = charts.Series("over", _("Over the plan"), "#D55E00")
    spend_groups = []
    for month in spend["months"]:
        is_over = month["budget"] is not None and month["spent"] > month["budget"]
        series = over if is_over else within
        spend_groups.append(
            (
                fmt_month(month["month"]),
                [
                    charts.Bar(
                        series,
                        month["spent"],
                        format_money(month["spent"]),
                        f"{fmt_month(month['month'])}: {format_money(month['spent'])}",
                        {"data-month": month["month"]},
                    )
                ],
            )
        )
    marker = None
    if spend["budget"]:
        marker = (spend["budget"], _("Plan: %(amount)s a month", amount=format_money(spend["budget"])))
    over_months = [
        fmt_month(m["month"]) for m in spend["months"] if m["budget"] is not None and m["spent"] > m["budget"]
    ]
    spend_desc = _("Granted in these months: %(total)s.", total=format_money(spend["total"]))
    if spend["budget"]:
        spend_desc += " " + (
            _("Over the plan in: %(months)s.", months=", ".join(over_months))
            if over_months
            else _("Every month within the plan.")
        )
    result["spend_series"] = [within, over] if spend["budget"] else [within]
    result["spend"] = charts.grouped_bars(
        "recovery-chart-spend",
        title=_("Compensation spend per month"),
        desc=spend_desc,
        groups=spend_groups,
        tick_format=_money_axis,
        marker=marker,
        kind="spend",
    )

    # Check-in answers: one 100% bar.
    follow = data["followups"]
    good = charts.Series("good", _("All good"), "#009E73")
    not_right = charts.Series("not_right", _("Still not right"), "#D55E00")
    silent = charts.Series("no_answer", _("No answer"), "#6E7781")
    sent = follow["sent"]
    answer_bars = [
        charts.Bar(s, n, fmt_int(n), f"{s.name}: {fmt_int(n)}")
        for s, n in ((good, follow["good"]), (not_right, follow["not_right"]), (silent, sent - follow["answered"]))
    ]
    result["answer_series"] = [good, not_right, silent]
    result["followups"] = charts.stacked_bars(
        "recovery-chart-followups",
        title=_("Answers to the check-in mail"),
        desc=_(
            "%(sent)s; %(rate)s answered; of the answers, %(good)s say all good.",
            sent=ngettext("%(n)s check-in sent", "%(n)s check-ins sent", sent, n=fmt_int(sent)),
            rate=fmt_share(follow["answer_rate"]),
            good=fmt_share(follow["good_share"]),
        ),
        rows=[(_("Sent"), answer_bars, fmt_int(sent))],
        tick_format=lambda v: fmt_int(int(v)),
        kind="followups",
        label_width=56,
    )

    # Booked again within 30/60/90 days, with and without an incident.
    returns = data["returns"]
    with_series = charts.Series("with_incident", group_label("with_incident"), "#D55E00")
    without_series = charts.Series("without_incident", group_label("without_incident"), "#0072B2")
    return_groups = []
    sentences = []
    for days in returns["windows"]:
        bars = []
        for series in (with_series, without_series):
            figures = returns[series.key][str(days)]
            text = (
                _(
                    "%(rate)s of %(clients)s",
                    rate=fmt_share(figures["rate"]),
                    clients=fmt_int(figures["clients"]),
                )
                if figures["clients"]
                else _("no clients yet")
            )
            bars.append(
                charts.Bar(series, figures["rate"] or 0, text, f"{series.name}: {text}", {"data-days": str(days)})
            )
        return_groups.append((_("Within %(days)s days", days=days), bars))
        sentences.append(
            _(
                "Within %(days)s days: %(with)s after an incident, %(without)s without.",
                days=days,
                **{
                    "with": fmt_share(returns["with_incident"][str(days)]["rate"]),
                    "without": fmt_share(returns["without_incident"][str(days)]["rate"]),
                },
            )
        )
    result["return_series"] = [with_series, without_series]
    result["returns"] = charts.grouped_bars(
        "recovery-chart-returns",
        title=_("Clients who booked again"),
        desc=" ".join(sentences),
        groups=return_groups,
        tick_format=lambda v: fmt_share(v),
        maximum=1,
        kind="returns",
    )
    return result


# -- the routes ---------------------------------------------------------------------------------


def _filter_values() -> dict[str, str]:
    return {name: (request.args.get(name) or "").strip()[:100] for name in FILTER_FIELDS}


def register_journal(bp: Blueprint) -> None:
    """Add the journal's routes to the ``recovery`` blueprint."""

    @bp.get("/journal")
    def journal():
        """The KPI journal: figures and charts for a period."""
        recovery = get_recovery()
        staff = require_permission(recovery.current_staff(), "journal.view")
        values = _filter_values()
        session = recovery.session
        context: dict[str, Any] = {
            "values": values,
            "errors": {},
            "staff": staff,
            "categories": [(c, category_label(c)) for c in category_keys(current_app.config)],
            "locations": [] if staff.location else stats.locations(session),
        }
        try:
            period = stats.make_period(
                values["since"], values["until"], location=values["location"], category=values["category"], staff=staff
            )
        except InvalidInput as error:
            context["errors"][error.field or "since"] = error.message
            return render_template("recovery/journal.html", data=None, **context, **_helpers()), 422
        data = stats.journal(session, period)
        if not values["since"] and not values["until"]:
            values.update(since=period.since.isoformat(), until=period.until.isoformat())
        query = {k: v for k, v in period.to_dict().items() if k in FILTER_FIELDS and v}
        return render_template(
            "recovery/journal.html",
            data=data,
            period=period,
            charts=build_charts(data),
            query=query,
            **context,
            **_helpers(),
        )

    @bp.get("/journal.csv")
    def journal_csv():
        """One figure of the journal as CSV (``figure=weekly|...``), or ``figure=all`` in a long format."""
        recovery = get_recovery()
        staff = require_permission(recovery.current_staff(), "journal.view")
        values = _filter_values()
        figure = request.args.get("figure", "all")
        if figure not in (*stats.FIGURES, "all"):
            raise InvalidInput(
                _("Unknown figure; choose one of: %(names)s.", names=", ".join((*stats.FIGURES, "all"))),
                field="figure",
            )
        period = stats.make_period(
            values["since"], values["until"], location=values["location"], category=values["category"], staff=staff
        )
        data = stats.journal(recovery.session, period)
        tables = stats.tables(data, labels=category_label)
        if figure == "all":
            body = stats.to_csv(tables.values(), long=True)
        else:
            body = stats.to_csv([tables[figure]])
        parts = ["recovery", figure, period.since.isoformat(), period.until.isoformat()]
        if period.location:
            parts.append("".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in period.location)[:40])
        if period.category:
            parts.append(period.category)
        filename = "-".join(parts) + ".csv"
        response = Response("\ufeff" + body, mimetype="text/csv")
        response.charset = "utf-8"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, no-store"
        return response


def _helpers() -> dict[str, Any]:
    return {
        "fmt_int": fmt_int,
        "fmt_share": fmt_share,
        "fmt_duration": fmt_duration,
        "fmt_week": fmt_week,
        "fmt_month": fmt_month,
        "fmt_day": fmt_day,
        "format_money": format_money,
        "category_label": category_label,
        "age_label": age_label,
        "group_label": group_label,
        "measure_label": measure_label,
    }
