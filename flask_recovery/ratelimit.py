"""Rate limits on the client's link pages (answer and unsubscribe), with Flask-Limiter.

The links in a check-in mail need no login, so they are the extension's only public
pages. Each client address (``request.remote_addr``: behind a proxy, apply Werkzeug's
``ProxyFix`` so it is the client's) may open them ``RECOVERY_RATE_LIMIT`` times (default
30 per minute, a moving window, all the link pages together); the next request gets a
friendly 429 page in her language with ``Retry-After``.

Settings: ``RECOVERY_RATE_LIMIT_ENABLED`` (read on each request),
``RECOVERY_RATE_LIMIT`` (read on each request) and ``RECOVERY_RATE_LIMIT_STORAGE_URI``
(read once: ``memory://`` by default, a Redis URI such as ``redis://localhost:6379/0``
in production so all workers share the counts). If the storage is unreachable the pages
stay up: the limiter logs the error and counts in memory until it is back.

The extension's ``Limiter`` is its own: it reads none of the host's ``RATELIMIT_*``
settings, applies to no route but the link pages, and keeps its keys under the prefix
``flask-recovery``, so a host's own Flask-Limiter instance and ours never see each
other's limits.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .config import key

#: The blueprint whose routes are limited (the client's link pages).
BLUEPRINT = "recovery_answers"
#: Where the counts live in the storage (keys start with it).
KEY_PREFIX = "flask-recovery"


class _OwnSettings:
    """The app as our ``Limiter`` sees it while it initialises: the app's hooks and
    extensions, but only the settings we give it (never the host's ``RATELIMIT_*``)."""

    def __init__(self, app: Flask, config: dict[str, Any]) -> None:
        self._app = app
        self.config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


def _limit() -> str:
    return current_app.config[key("RATE_LIMIT")]


def _not_ours() -> bool:
    """Requests this limiter leaves alone: all but the link pages, or all when switched off."""
    return request.blueprint != BLUEPRINT or not current_app.config[key("RATE_LIMIT_ENABLED")]


def _scope_hooks_to_links(app: Flask, limiter: Limiter) -> None:
    """Run the limiter's request hooks for the link pages only, not for every request of the
    host's app (``init_app`` adds them app-wide; here they move to the blueprint's own hooks,
    which is what ``bp.before_request`` would do, refused by Flask once it is registered)."""
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        app_wide = hooks.get(None, [])
        ours = [f for f in app_wide if getattr(f, "__self__", None) is limiter or limiter in getattr(f, "args", ())]
        for f in ours:
            app_wide.remove(f)
        hooks.setdefault(BLUEPRINT, []).extend(ours)


def init_rate_limits(app: Flask) -> Limiter:
    """Limit the client's link pages on ``app``; returns the extension's ``Limiter``.

    Also kept at ``app.extensions["recovery"].extra["limiter"]`` (tests reset it there).
    """
    storage_uri = app.config[key("RATE_LIMIT_STORAGE_URI")]
    limiter = Limiter(
        get_remote_address,
        storage_uri=storage_uri,
        strategy="moving-window",
        key_prefix=KEY_PREFIX,
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(_not_ours)
    settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": storage_uri}
    limiter.init_app(_OwnSettings(app, settings))  # type: ignore[arg-type]
    limiter.shared_limit(_limit, scope="links")(app.blueprints[BLUEPRINT])
    _scope_hooks_to_links(app, limiter)
    app.extensions["recovery"].extra["limiter"] = limiter
    return limiter
