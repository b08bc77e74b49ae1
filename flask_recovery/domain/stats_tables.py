"""The KPI journal's figures as plain tables: for CSV downloads and ``flask recovery stats``."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..i18n import gettext as _


@dataclass
class Table:
    """One figure as a table: column keys, translated headers, rows of plain values."""

    name: str
    title: str
    columns: list[str]
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def tables(data: dict, labels: Callable[[str], str] | None = None) -> dict[str, Table]:
    """Every figure of :func:`journal`'s ``data`` as a :class:`Table` (for CSV and the CLI).

    ``labels`` turns a category key into its label (default: the key itself).
    """
    label = labels or (lambda c: c)
    incidents = data["incidents"]
    categories = incidents["categories"]
    result: dict[str, Table] = {}

    for name, title, key_column, heading, buckets in (
        ("weekly", _("Incidents per week"), "week", _("Week from"), incidents["weeks"]),
        ("monthly", _("Incidents per month"), "month", _("Month"), incidents["months"]),
    ):
        table = Table(
            name,
            title,
            [key_column, "category", "category_label", "incidents"],
            [heading, _("Category"), _("Category name"), _("Incidents")],
        )
        for bucket in buckets:
            for category in categories:
                table.rows.append([bucket[key_column], category, label(category), bucket["counts"].get(category, 0)])
        result[name] = table

    speed = Table(
        "speed",
        _("Minutes from the visit's end"),
        ["measure", "cases", "median_minutes", "p90_minutes"],
        [_("Measure"), _("Cases"), _("Median, minutes"), _("90th percentile, minutes")],
    )
    for measure in ("recognition", "resolution"):
        figures = data["speed"][measure]
        speed.rows.append([measure, figures["cases"], figures["median_minutes"], figures["p90_minutes"]])
    result["speed"] = speed

    open_cases = Table("open_cases", _("Open cases by age"), ["age", "cases"], [_("Age"), _("Cases")])
    for bucket in data["open_cases"]["buckets"]:
        open_cases.rows.append([bucket["bucket"], bucket["cases"]])
    result["open_cases"] = open_cases

    spend = Table(
        "spend",
        _("Compensation spend per month"),
        ["month", "grants", "spent", "budget", "left", "currency"],
        [_("Month"), _("Remedies granted"), _("Spent (minor units)"), _("Budget"), _("Left"), _("Currency")],
    )
    for month in data["spend"]["months"]:
        spend.rows.append(
            [month["month"], month["grants"], month["spent"], month["budget"], month["left"], data["currency"]]
        )
    result["spend"] = spend

    follow = data["followups"]
    followups = Table(
        "followups",
        _("Check-in answers"),
        ["sent", "answered", "good", "not_right", "answer_rate", "good_share"],
        [_("Sent"), _("Answered"), _("All good"), _("Still not right"), _("Answer rate"), _("Share of all good")],
        [[follow[c] for c in ("sent", "answered", "good", "not_right", "answer_rate", "good_share")]],
    )
    result["followups"] = followups

    returns = Table(
        "returns",
        _("Booked again"),
        ["group", "days", "clients", "returned", "rate"],
        [_("Clients"), _("Within days"), _("Clients counted"), _("Booked again"), _("Rate")],
    )
    for group in ("with_incident", "without_incident"):
        for days in data["returns"]["windows"]:
            figures = data["returns"][group][str(days)]
            returns.rows.append([group, days, figures["clients"], figures["returned"], figures["rate"]])
    result["returns"] = returns
    return result


def csv_cell(value: Any) -> Any:
    """A value safe for a spreadsheet: text that starts like a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(table_list: Iterable[Table], *, long: bool = False) -> str:
    """CSV text of one table (its columns as the header) or, with ``long``, of several in one
    long format: ``figure, row, column, value``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    table_list = list(table_list)
    if long:
        writer.writerow(["figure", "row", "column", "value"])
        for table in table_list:
            for number, row in enumerate(table.rows, start=1):
                for column, value in zip(table.columns, row, strict=True):
                    writer.writerow([table.name, number, column, csv_cell(value)])
    else:
        for table in table_list:
            writer.writerow(table.columns)
            for row in table.rows:
                writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()
