"""The current app's :class:`~flask_recovery.Recovery` and its state: a leaf module.

Like Flask-Login's ``utils`` and Flask-Security's ``proxies``: adapters (views, the API,
the answer pages, widgets, the journal, the CLI, tasks) reach the extension through here,
and this module imports nothing of the extension's, so no import goes in a circle through
:mod:`flask_recovery.extension` (which imports the adapters to register them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from .extension import Recovery


def state() -> Any:
    """What ``init_app`` stored on the current app (``app.extensions["recovery"]``)."""
    try:
        return current_app.extensions["recovery"]
    except KeyError:
        raise RuntimeError("flask-recovery is not initialised on the current app.") from None


def get_recovery() -> Recovery:
    """The :class:`~flask_recovery.Recovery` registered on the current app."""
    recovery: Recovery = state().recovery
    return recovery
