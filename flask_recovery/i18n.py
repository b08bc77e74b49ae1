"""Translations of the extension's own text (Flask-Babel domain ``flask_recovery``), and
which language a reader gets.

The catalogues ship in ``flask_recovery/translations``. Templates call ``_r(...)``;
Python code calls :func:`gettext` / :func:`lazy_gettext` from here, so the host's own
``messages`` domain is never touched.

The language order (the contract's "Language"): what a staff member reads (the
extension's pages, the widget and badges on a host's page, form and API errors) follows
:func:`staff_locale`: ``Staff.locale``, then the host's own Flask-Babel locale selector
(when the host set up Babel with one), then the request (``?lang=``, ``Accept-Language``),
then ``RECOVERY_DEFAULT_LOCALE``. Client pages and mail follow ``Booking.locale``
(:func:`flask_recovery.followup_mail.client_locale`).

Two ways to apply it, both on top of :func:`flask_babel.force_locale`, which swaps the
locale Flask-Babel caches for the request (``get_locale()``) and puts the previous one
back on exit, so the host's page after the block reads the language its own selector chose:

- :func:`init_staff_locale` on a blueprint: the whole request of the extension's own
  pages and API speaks the staff member's language;
- :func:`staff_language` around a fragment drawn inside a host's page (the widget, the
  badges): only the fragment does; the host's page before and after it keeps its own
  language.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from babel import Locale, UnknownLocaleError
from flask import Blueprint, current_app, g, has_app_context, has_request_context, request
from flask_babel import Domain, force_locale, get_locale

TRANSLATIONS_DIR = os.path.join(os.path.dirname(__file__), "translations")

domain = Domain(translation_directories=[TRANSLATIONS_DIR], domain="flask_recovery")

gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext

log = logging.getLogger("flask_recovery")

#: Where :func:`apply_staff_locale` keeps the request's forced locale until teardown.
_REQUEST_LOCALE = "_recovery_request_locale"
#: Parsed ``babel.Locale`` objects by name, so forcing a locale parses nothing twice.
_PARSED: dict[str, Locale] = {}


# -- which language -----------------------------------------------------------------


def _config_locales() -> list[str]:
    return list(current_app.config["RECOVERY_LOCALES"])


def default_locale() -> str:
    """``RECOVERY_DEFAULT_LOCALE``."""
    return current_app.config["RECOVERY_DEFAULT_LOCALE"]


def supported_locale(candidate: Any, locales: Iterable[str] | None = None) -> str | None:
    """``candidate`` as one of ``RECOVERY_LOCALES``, or ``None``.

    Accepts ``"ru"``, ``"ru_RU"``, ``"ru-RU"`` or a ``babel.Locale``; a regional variant
    falls back to its language (``ru_RU`` -> ``ru``) and a language to a listed regional
    variant of it (``pt`` -> ``pt_BR``). Anything else (``None``, ``""``, an unknown
    language) is ``None``.
    """
    if candidate is None:
        return None
    text = str(candidate).strip().replace("-", "_")
    if not text:
        return None
    listed = list(_config_locales() if locales is None else locales)
    if text in listed:
        return text
    lowered = {locale.lower(): locale for locale in listed}
    if text.lower() in lowered:
        return lowered[text.lower()]
    language = text.split("_")[0].lower()
    for locale in listed:
        if locale.split("_")[0].lower() == language:
            return locale
    return None


def request_locale(locales: Iterable[str] | None = None) -> str | None:
    """The request's language among ``RECOVERY_LOCALES``: ``?lang=``, then the browser's
    ``Accept-Language``; ``None`` outside a request or when neither names one."""
    if not has_request_context():
        return None
    listed = list(_config_locales() if locales is None else locales)
    # look before parsing: most requests carry neither (parsing costs on every page)
    if b"lang=" in request.query_string:
        chosen = supported_locale(request.args.get("lang"), listed)
        if chosen:
            return chosen
    if "Accept-Language" in request.headers:
        match = request.accept_languages.best_match(listed)
        if match:
            return match
    return None


def select_locale() -> str:
    """The locale selector the extension gives Flask-Babel when the host has no Babel:
    the request's language, else ``RECOVERY_DEFAULT_LOCALE``."""
    return request_locale() or default_locale()


def _own_selector(selector: Any) -> bool:
    """Whether ``selector`` is the extension's (the host's Babel is then no answer of its own)."""
    return selector is select_locale


def host_locale(locales: Iterable[str] | None = None) -> str | None:
    """What the host's own Flask-Babel locale selector answers, among ``RECOVERY_LOCALES``.

    ``None`` when the host set up no Babel of its own (the extension's Babel is not the
    host's choice), when its Babel has no selector, when the selector answers ``None`` or
    a language the extension does not speak, or when it raises (logged: a host's broken
    selector must not break the widget on its page).
    """
    if not has_app_context():
        return None
    babel = current_app.extensions.get("babel")
    selector = getattr(babel, "locale_selector", None)
    if selector is None or _own_selector(selector):
        return None
    try:
        answer = selector()
    except Exception:
        log.exception("the host's Flask-Babel locale selector failed; using the request's language")
        return None
    return supported_locale(answer, _config_locales() if locales is None else locales)


def staff_locale(staff: Any) -> str:
    """The language a staff member reads the extension in (``staff`` may be ``None``).

    ``Staff.locale``, then the host's Flask-Babel selector (:func:`host_locale`), then the
    request (:func:`request_locale`), then ``RECOVERY_DEFAULT_LOCALE``; each among
    ``RECOVERY_LOCALES``. Works outside a request (the CLI): the request step is skipped.
    """
    locales = _config_locales()
    return (
        supported_locale(getattr(staff, "locale", None), locales)
        or host_locale(locales)
        or request_locale(locales)
        or default_locale()
    )


# -- applying it -------------------------------------------------------------------


def _parsed(locale: str | Locale) -> Locale:
    if isinstance(locale, Locale):
        return locale
    found = _PARSED.get(locale)
    if found is None:
        found = _PARSED[locale] = Locale.parse(locale)
    return found


def current_locale() -> str:
    """The locale Flask-Babel uses now (``RECOVERY_DEFAULT_LOCALE`` outside a context)."""
    if not has_app_context():
        return "en"  # no app, no configuration: the catalogues' source language
    try:
        locale = get_locale()
    except (KeyError, UnknownLocaleError):  # no Babel on the app, or a selector's nonsense
        locale = None
    return str(locale) if locale is not None else default_locale()


@contextmanager
def language(locale: str | Locale | None) -> Iterator[None]:
    """Translate and format in ``locale`` inside the block (``None``: leave it as it is).

    :func:`flask_babel.force_locale`, but nothing is swapped when the locale is already in
    force (the widget on the extension's own page, every badge after the first), so an
    outer forced locale keeps its state. The locale in force before the block is read
    first (the host's selector runs as it would for its page) and is back on exit.
    """
    if locale is None or not has_app_context() or "babel" not in current_app.extensions:
        yield
        return
    target = _parsed(locale)
    if current_locale() == str(target):
        yield
        return
    with force_locale(target):
        yield


@contextmanager
def staff_language(staff: Any) -> Iterator[str]:
    """Inside the block, the extension speaks ``staff``'s language (:func:`staff_locale`).

    For what the extension draws inside a host's page::

        with staff_language(staff):
            html = render_template("recovery/_widget.html", **context)

    Yields the locale in force. The host's page around the block keeps its own language.
    """
    locale = staff_locale(staff)
    with language(locale):
        yield locale


def apply_staff_locale() -> None:
    """``before_request`` hook: the rest of this request speaks the logged-in staff member's
    language (:func:`staff_locale`; the host's staff loader tells who it is).

    For the extension's own pages and API, where every word is for the staff member:
    messages, form and API errors included. Undone by :func:`restore_locale`. A staff
    loader that fails here is left for the view to meet (it calls the loader itself), so
    its error is the view's usual one, in the request's language.
    """
    from .proxies import get_recovery

    try:
        staff = get_recovery().current_staff()
    except Exception:  # the view calls the loader again and reports it its own way
        log.debug("staff loader failed while choosing the page language", exc_info=True)
        staff = None
    locale = staff_locale(staff)
    restore_locale()  # a second call in one request replaces the first, not stacks on it
    stack = ExitStack()
    stack.enter_context(language(locale))
    setattr(g, _REQUEST_LOCALE, stack)


def restore_locale(_error: BaseException | None = None) -> None:
    """``teardown_request`` hook: put back the locale :func:`apply_staff_locale` replaced."""
    stack = g.pop(_REQUEST_LOCALE, None) if has_app_context() else None
    if stack is not None:
        stack.close()


def init_staff_locale(blueprint: Blueprint) -> Blueprint:
    """Make every request of ``blueprint`` speak the staff member's language.

    Registers :func:`apply_staff_locale` (``before_request``) and :func:`restore_locale`
    (``teardown_request``) on it; call it in ``create_blueprint`` for the staff pages and
    the JSON API, not for the client's answer pages (they follow the booking's locale).
    Returns the blueprint.
    """
    blueprint.before_request(apply_staff_locale)
    blueprint.teardown_request(restore_locale)
    return blueprint
