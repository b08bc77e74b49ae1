"""Configuration: defaults (unprefixed) and validation that names the bad key.

Every key is read from ``app.config`` as ``"RECOVERY_" + name``. Defaults are applied with
``app.config.setdefault`` in :meth:`Recovery.init_app`, then :func:`validate` checks the
whole set once and raises :class:`ConfigError` naming the first bad key. Structural keys
(``URL_PREFIX``) are read once at ``init_app``; behaviour keys are read on each use.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Remedy kinds a compensation can take (stable keys).
REMEDY_KINDS = ("gift", "discount", "percent_discount", "redo", "refund")

#: How a naive booking time is read: local time in RECOVERY_TIMEZONE, UTC, or refused.
NAIVE_DATETIME_MODES = ("local", "utc", "error")

#: Incident severities, mildest first (stable keys).
SEVERITIES = ("minor", "major", "critical")

#: The default incident catalogue, drawn from salon practice (stable keys).
DEFAULT_CATEGORIES = (
    "late",
    "result",
    "communication",
    "double_booking",
    "cancelled_by_us",
    "hygiene",
    "billing",
    "product",
    "other",
)

#: Client abuse of staff: always in the catalogue, whatever the host configures.
CONDUCT_CATEGORY = "client_conduct"

#: What each action needs: ``"*"`` means any staff member, a list names the roles.
DEFAULT_PERMISSIONS: dict[str, Any] = {
    "incident.record": "*",
    "incident.resolve": ["admin", "manager"],
    "incident.reopen": ["admin", "manager"],
    "conduct.view": ["admin", "manager"],
    "compensation.request": ["admin", "manager"],
    "compensation.approve": ["manager"],
    "budget.view": ["manager"],
    "client.view": "*",
    "flag.acknowledge": "*",
    "flag.manage": ["manager"],
    "hold.manage": ["manager"],
    "journal.view": ["manager"],
}

DEFAULT_AUTHORITY: dict[str, dict[str, Any]] = {
    "admin": {
        "per_grant": 150000,
        "per_month": 500000,
        "kinds": ["gift", "discount", "percent_discount", "redo"],
    },
    "manager": {"per_grant": None, "per_month": None, "kinds": "all"},
}

#: category -> severity -> suggested remedy kinds, best fit first.
DEFAULT_MATRIX: dict[str, dict[str, list[str]]] = {
    "late": {
        "minor": [],
        "major": ["percent_discount", "gift"],
        "critical": ["percent_discount", "discount"],
    },
    "result": {"minor": ["redo"], "major": ["redo", "discount"], "critical": ["redo", "refund"]},
    "communication": {"minor": [], "major": ["gift"], "critical": ["gift", "discount"]},
    "double_booking": {
        "minor": ["gift"],
        "major": ["discount", "gift"],
        "critical": ["discount", "refund"],
    },
    "cancelled_by_us": {
        "minor": ["gift"],
        "major": ["discount"],
        "critical": ["discount", "refund"],
    },
    "hygiene": {"minor": [], "major": ["redo", "discount"], "critical": ["refund", "discount"]},
    "billing": {"minor": ["refund"], "major": ["refund", "gift"], "critical": ["refund", "discount"]},
    "product": {"minor": ["gift"], "major": ["redo", "refund"], "critical": ["refund", "redo"]},
    "other": {"minor": [], "major": ["gift"], "critical": ["discount"]},
}

DEFAULTS: dict[str, Any] = {
    "URL_PREFIX": "/recovery",
    "CURRENCY": "EUR",
    "TIMEZONE": "UTC",
    "NAIVE_DATETIMES": "local",
    "DEFAULT_LOCALE": "en",
    "LOCALES": ("en", "ru"),
    "CATEGORIES": DEFAULT_CATEGORIES,
    "PERMISSIONS": DEFAULT_PERMISSIONS,
    "AUTHORITY": DEFAULT_AUTHORITY,
    "MATRIX": DEFAULT_MATRIX,
    "MONTHLY_BUDGET": None,
    "FOLLOWUP_DELAY": timedelta(hours=24),
    "FOLLOWUP_WINDOW": (10, 20),
    "FOLLOWUP_ALL_VISITS": False,
    "FOLLOWUP_MIN_INTERVAL": timedelta(days=30),
    "FOLLOWUP_REMINDER_AFTER": timedelta(days=3),
    "VIP_DAYS": 90,
    "MANAGER_EMAILS": (),
    "MAX_TEXT_LENGTH": 4000,
    "SMTP_TIMEOUT": 10,
    "VOUCHER_DAYS": 180,
    "BASE_URL": None,
    "LOGIN_VIEW": None,  # the host's login: an endpoint name or a URL (None: Flask-Login's login_view)
    "MAX_AMOUNT": 100_000_000,
    "LINK_MAX_AGE": timedelta(days=30),
    "UNSUBSCRIBE_LINK_MAX_AGE": timedelta(days=365),
    "SALON_NAME": None,
    "RATE_LIMIT_ENABLED": True,
    "RATE_LIMIT": "30 per minute",
    "RATE_LIMIT_STORAGE_URI": "memory://",
}

_LOCALE_RE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ConfigError(ValueError):
    """A ``RECOVERY_*`` setting is missing a required shape; the message names the key."""


def key(name: str) -> str:
    """The full config key for an unprefixed name."""
    return "RECOVERY_" + name


def apply_defaults(config: dict) -> None:
    """Set every default the host has not set (``setdefault``: host values win).

    Each app gets its own copy of a mutable default (the permissions, authority and matrix
    dicts, the categories): changing one app's never changes another's or the module's.
    """
    for name, value in DEFAULTS.items():
        config.setdefault(key(name), copy.deepcopy(value))


def _fail(name: str, message: str, value: Any) -> None:
    raise ConfigError(f"{key(name)} {message} (got {value!r})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_amount_or_none(name: str, value: Any, what: str) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        _fail(name, f"{what} must be a non-negative integer in minor units or None", value)


def _check_timedelta(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, timedelta) or value < timedelta(0):
        _fail(name, "must be a non-negative datetime.timedelta" + (" or None" if allow_none else ""), value)


def validate(config: Mapping[str, Any]) -> None:
    """Check every ``RECOVERY_*`` key; raise :class:`ConfigError` naming the first bad one."""

    def get(name: str) -> Any:
        return config[key(name)]

    prefix = get("URL_PREFIX")
    if not isinstance(prefix, str) or not (prefix == "" or (prefix.startswith("/") and not prefix.endswith("/"))):
        _fail("URL_PREFIX", "must be '' or a path starting with '/' and not ending with '/'", prefix)

    currency = get("CURRENCY")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        _fail("CURRENCY", "must be an ISO 4217 code such as 'EUR' or 'RUB'", currency)

    tz = get("TIMEZONE")
    try:
        if not isinstance(tz, str):
            raise ZoneInfoNotFoundError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        _fail("TIMEZONE", "must be an IANA time zone name such as 'Europe/Moscow'", tz)

    naive = get("NAIVE_DATETIMES")
    if naive not in NAIVE_DATETIME_MODES:
        _fail("NAIVE_DATETIMES", f"must be one of {list(NAIVE_DATETIME_MODES)}", naive)

    locales = get("LOCALES")
    if (
        isinstance(locales, str)
        or not isinstance(locales, Sequence)
        or not locales
        or not all(isinstance(loc, str) and _LOCALE_RE.match(loc) for loc in locales)
    ):
        _fail("LOCALES", "must be a non-empty list of locale codes such as ['en', 'ru']", locales)
    default_locale = get("DEFAULT_LOCALE")
    if default_locale not in locales:
        _fail("DEFAULT_LOCALE", f"must be one of RECOVERY_LOCALES {list(locales)}", default_locale)

    categories = get("CATEGORIES")
    if isinstance(categories, Mapping):
        cat_keys = list(categories)
        for cat, label in categories.items():
            if not isinstance(label, str | Mapping):
                _fail("CATEGORIES", f"label of {cat!r} must be a string or a {{locale: label}} mapping", label)
    elif isinstance(categories, Sequence) and not isinstance(categories, str):
        cat_keys = list(categories)
    else:
        _fail("CATEGORIES", "must be a list of category keys or a {key: label} mapping", categories)
    if not cat_keys:
        _fail("CATEGORIES", "must name at least one category", categories)
    for cat in cat_keys:
        if not isinstance(cat, str) or not _KEY_RE.match(cat):
            _fail("CATEGORIES", "keys must be lower-case identifiers of at most 32 characters", cat)

    permissions = get("PERMISSIONS")
    if not isinstance(permissions, Mapping):
        _fail("PERMISSIONS", "must be a mapping of action -> '*' or a list of roles", permissions)
    for action, roles in permissions.items():
        if action not in DEFAULT_PERMISSIONS:
            _fail("PERMISSIONS", f"names an unknown action {action!r}; known: {sorted(DEFAULT_PERMISSIONS)}", action)
        if roles != "*" and (
            isinstance(roles, str) or not isinstance(roles, Sequence) or not all(isinstance(r, str) for r in roles)
        ):
            _fail("PERMISSIONS", f"[{action!r}] must be '*' or a list of role names", roles)

    authority = get("AUTHORITY")
    if not isinstance(authority, Mapping):
        _fail("AUTHORITY", "must be a mapping of role -> {per_grant, per_month, kinds}", authority)
    for role, limits in authority.items():
        if not isinstance(limits, Mapping):
            _fail("AUTHORITY", f"[{role!r}] must be a mapping with per_grant, per_month and kinds", limits)
        unknown = set(limits) - {"per_grant", "per_month", "kinds"}
        if unknown:
            _fail("AUTHORITY", f"[{role!r}] has unknown keys {sorted(unknown)}", limits)
        _check_amount_or_none("AUTHORITY", limits.get("per_grant"), f"[{role!r}]['per_grant']")
        _check_amount_or_none("AUTHORITY", limits.get("per_month"), f"[{role!r}]['per_month']")
        kinds = limits.get("kinds", "all")
        if kinds != "all" and (
            isinstance(kinds, str) or not isinstance(kinds, Sequence) or not set(kinds) <= set(REMEDY_KINDS)
        ):
            _fail("AUTHORITY", f"[{role!r}]['kinds'] must be 'all' or a list drawn from {list(REMEDY_KINDS)}", kinds)

    matrix = get("MATRIX")
    if not isinstance(matrix, Mapping):
        _fail("MATRIX", "must be a mapping category -> severity -> list of remedy kinds", matrix)
    for cat, by_severity in matrix.items():
        if not isinstance(by_severity, Mapping):
            _fail("MATRIX", f"[{cat!r}] must be a mapping severity -> list of remedy kinds", by_severity)
        for severity, kinds in by_severity.items():
            if severity not in SEVERITIES:
                known = list(SEVERITIES)
                _fail("MATRIX", f"[{cat!r}] names an unknown severity {severity!r}; known: {known}", severity)
            if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not set(kinds) <= set(REMEDY_KINDS):
                _fail("MATRIX", f"[{cat!r}][{severity!r}] must be a list drawn from {list(REMEDY_KINDS)}", kinds)

    _check_amount_or_none("MONTHLY_BUDGET", get("MONTHLY_BUDGET"), "")
    _check_timedelta("FOLLOWUP_DELAY", get("FOLLOWUP_DELAY"))
    _check_timedelta("FOLLOWUP_MIN_INTERVAL", get("FOLLOWUP_MIN_INTERVAL"))
    _check_timedelta("FOLLOWUP_REMINDER_AFTER", get("FOLLOWUP_REMINDER_AFTER"), allow_none=True)

    window = get("FOLLOWUP_WINDOW")
    if (
        isinstance(window, str)
        or not isinstance(window, Sequence)
        or len(window) != 2
        or not all(_is_int(h) for h in window)
        or not 0 <= window[0] < window[1] <= 24
    ):
        _fail("FOLLOWUP_WINDOW", "must be a pair of local hours (start, end) with 0 <= start < end <= 24", window)

    if not isinstance(get("FOLLOWUP_ALL_VISITS"), bool):
        _fail("FOLLOWUP_ALL_VISITS", "must be True or False", get("FOLLOWUP_ALL_VISITS"))

    vip_days = get("VIP_DAYS")
    if not _is_int(vip_days) or vip_days < 1:
        _fail("VIP_DAYS", "must be a positive whole number of days", vip_days)

    emails = get("MANAGER_EMAILS")
    if (
        isinstance(emails, str)
        or not isinstance(emails, Sequence)
        or not all(isinstance(e, str) and re.fullmatch(r"[^@\s]+@[^@\s]+", e) for e in emails)
    ):
        _fail("MANAGER_EMAILS", "must be a list of e-mail addresses", emails)

    base_url = get("BASE_URL")
    if base_url is not None and (
        not isinstance(base_url, str)
        or not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url)
        or base_url.endswith("/")
    ):
        _fail(
            "BASE_URL",
            "must be None or the site's address such as 'https://salon.example.com' (no trailing /)",
            base_url,
        )

    voucher_days = get("VOUCHER_DAYS")
    if not _is_int(voucher_days) or voucher_days < 1:
        _fail("VOUCHER_DAYS", "must be a positive whole number of days", voucher_days)
    max_amount = get("MAX_AMOUNT")
    if not _is_int(max_amount) or max_amount < 1:
        _fail("MAX_AMOUNT", "must be a positive integer in minor units", max_amount)

    timeout = get("SMTP_TIMEOUT")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        _fail("SMTP_TIMEOUT", "must be a number of seconds between 0 and 600", timeout)

    for name in ("LINK_MAX_AGE", "UNSUBSCRIBE_LINK_MAX_AGE"):
        value = get(name)
        if not isinstance(value, timedelta) or value < timedelta(seconds=1):
            _fail(name, "must be a datetime.timedelta of at least one second", value)

    salon_name = get("SALON_NAME")
    if salon_name is not None and (
        not isinstance(salon_name, str)
        or not salon_name.strip()
        or len(salon_name) > 120
        or re.search(r"[\r\n]", salon_name)
    ):
        _fail("SALON_NAME", "must be None or the salon's name on one line (at most 120 characters)", salon_name)

    login_view = get("LOGIN_VIEW")
    if login_view is not None and (not isinstance(login_view, str) or not login_view.strip()):
        _fail("LOGIN_VIEW", "must be None, an endpoint name such as 'auth.login' or a URL such as '/login'", login_view)

    _check_rate_limits(get)

    max_len = get("MAX_TEXT_LENGTH")
    if not _is_int(max_len) or not 1 <= max_len <= 100_000:
        _fail("MAX_TEXT_LENGTH", "must be a whole number of characters between 1 and 100000", max_len)


def _check_rate_limits(get) -> None:
    """The limits on the client's link pages (Flask-Limiter): on/off, the limit, the storage."""
    if not isinstance(get("RATE_LIMIT_ENABLED"), bool):
        _fail("RATE_LIMIT_ENABLED", "must be True or False", get("RATE_LIMIT_ENABLED"))
    limit = get("RATE_LIMIT")
    try:
        from limits import parse_many

        if not isinstance(limit, str) or not parse_many(limit):
            raise ValueError(limit)
    except ValueError:
        _fail("RATE_LIMIT", "must be a rate limit such as '30 per minute' or '30/minute; 300/day'", limit)
    uri = get("RATE_LIMIT_STORAGE_URI")
    from limits.storage import SCHEMES

    scheme = uri.partition("://")[0] if isinstance(uri, str) and "://" in uri else None
    if scheme not in SCHEMES or scheme.startswith("async+"):
        _fail(
            "RATE_LIMIT_STORAGE_URI",
            "must be a storage URI of the 'limits' package such as 'memory://' or 'redis://localhost:6379/0'",
            uri,
        )


def authority_for(config: Mapping[str, Any], role: str) -> dict[str, Any] | None:
    """The role's authority (``per_grant``, ``per_month``, ``kinds`` as a set), or ``None``."""
    limits = config[key("AUTHORITY")].get(role)
    if limits is None:
        return None
    kinds = limits.get("kinds", "all")
    return {
        "per_grant": limits.get("per_grant"),
        "per_month": limits.get("per_month"),
        "kinds": set(REMEDY_KINDS) if kinds == "all" else set(kinds),
    }


def category_keys(config: Mapping[str, Any]) -> list[str]:
    """The configured incident categories, with ``client_conduct`` always last."""
    keys = [c for c in config[key("CATEGORIES")] if c != CONDUCT_CATEGORY]
    return keys + [CONDUCT_CATEGORY]


def permitted(config: Mapping[str, Any], action: str, role: str) -> bool:
    """Whether ``role`` may perform ``action`` under ``RECOVERY_PERMISSIONS``."""
    roles = config[key("PERMISSIONS")].get(action, DEFAULT_PERMISSIONS[action])
    return roles == "*" or role in roles
