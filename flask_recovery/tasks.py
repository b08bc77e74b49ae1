"""The optional Celery task: ``flask_recovery.tasks.send_due_followups`` for beat.

Wire it into your Celery app (Flask's own "Background Tasks with Celery" pattern, whose
tasks run inside an app context)::

    celery.conf.beat_schedule = {"recovery-followups": {
        "task": "flask_recovery.tasks.send_due_followups", "schedule": 300.0}}

The task carries no ETA and holds no state: every run plans and sends what is due now, and
the outbox's leases make two runs at once (or the same task delivered twice) send nothing
twice.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="flask_recovery.tasks.send_due_followups", ignore_result=True, acks_late=False)
def send_due_followups(limit: int = 500) -> dict:
    """Plan and send due check-ins and staff mail; returns the counts."""
    from .followups import send_due_followups as dispatch
    from .notifications import send_pending_notifications

    result = dispatch(limit=limit)
    staff = send_pending_notifications(limit=limit)
    return {
        "planned": result.planned,
        "sent": result.sent,
        "retry": result.retry,
        "failed": result.failed,
        "staff_mail_sent": staff.sent,
    }
