"""Small helpers: locale choice, money and time formatting, safe redirects."""

from __future__ import annotations

from datetime import date, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import current_app, has_request_context, request, session

LANGUAGES = ("ru", "en")
LANG_SESSION_KEY = "lang"


def select_locale() -> str:
    """Flask-Babel locale selector: the language switcher, then Accept-Language, then ru."""
    if not has_request_context():  # CLI and cron jobs (the extension's mail picks its own)
        return current_app.config.get("BABEL_DEFAULT_LOCALE", "ru")
    chosen = session.get(LANG_SESSION_KEY)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or "ru"


def salon_tz() -> ZoneInfo:
    return ZoneInfo(current_app.config["RECOVERY_TIMEZONE"])


def salon_today() -> date:
    return datetime.now(salon_tz()).date()


def rubles(kopecks: int | None) -> str:
    """``150000`` -> ``"1 500 ₽"``; kopecks are shown only when there are any."""
    if kopecks is None:
        return ""
    sign = "−" if kopecks < 0 else ""
    major, minor = divmod(abs(int(kopecks)), 100)
    text = f"{major:,}".replace(",", " ")
    if minor:
        text += f",{minor:02d}"
    return f"{sign}{text} ₽"


def local_time(value: datetime) -> str:
    """An aware datetime as ``HH:MM`` in the salon's time zone."""
    return value.astimezone(salon_tz()).strftime("%H:%M")


def safe_next(target: object) -> str | None:
    """``target`` if it is a path on this site (``/...``), else ``None``.

    Rejects ``//host``, backslashes, control characters and anything with a scheme or
    host, so a crafted ``next`` can never send the browser to another site.
    """
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 2000:
        return None
    if target.startswith("//") or "\\" in target:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def here() -> str:
    """The current page as a local path (with its query), for a form's ``next``."""
    return request.full_path if request.query_string else request.path
