"""Blinker signals. The sender is always the current Flask app.

A receiver that raises is logged and does not break the host's request
(see :func:`send_robust`).
"""

from __future__ import annotations

import logging

from blinker import Namespace
from flask import current_app

_signals = Namespace()
log = logging.getLogger("flask_recovery")

incident_recorded = _signals.signal("incident-recorded")
"""An incident was recorded. Arguments: ``incident`` (the model), ``booking``
(:class:`~flask_recovery.Booking`), ``staff`` (:class:`~flask_recovery.Staff`)."""

compensation_granted = _signals.signal("compensation-granted")
"""A compensation was granted. Arguments: ``compensation``, ``incident``, ``staff``."""

compensation_requested = _signals.signal("compensation-requested")
"""A compensation above the staff member's authority was filed for approval.
Arguments: ``compensation``, ``incident``, ``staff``."""

compensation_decided = _signals.signal("compensation-decided")
"""A manager approved or rejected a request. Arguments: ``compensation``, ``staff``,
``approved`` (bool)."""

followup_sent = _signals.signal("followup-sent")
"""A follow-up mail left. Arguments: ``followup``."""

feedback_received = _signals.signal("feedback-received")
"""A client answered a follow-up. Arguments: ``followup``, ``answer``."""

client_flagged = _signals.signal("client-flagged")
"""A client's flag for her next visit was set, or is due on a booking just made: push it to
the desk. Arguments: ``flag`` (the :class:`~flask_recovery.models.Flag`: ``type`` ``vip`` or
``conduct``, ``reason``, ``client_id``), ``booking`` (the :class:`~flask_recovery.Booking`
it was set on or is for; ``None`` when a manager flagged her from her history page),
``staff`` (who set it; ``None`` for ``cause="booking"``), and ``cause``: ``"set"`` (an
incident was recorded or a manager set it by hand) or ``"booking"``
(``recovery.booking_created`` for a booking the flag is for)."""


def send_robust(signal, **kwargs) -> None:
    """Send ``signal`` from the current app; log and swallow a receiver's failure."""
    app = current_app._get_current_object()
    for receiver in signal.receivers_for(app):
        try:
            receiver(app, **kwargs)
        except Exception:  # a host receiver must not break our request
            log.exception("receiver %r of signal %r failed", receiver, signal.name)
