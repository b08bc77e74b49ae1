"""The Celery task on a real worker and a real Redis broker: two runs at once, and the same
task delivered twice, send every due check-in exactly once (SQLite and PostgreSQL).

The worker is ``celery -A tests.dispatcher_app:celery worker`` in a subprocess (prefork, two
processes), on a queue of its own, with Flask's documented pattern: a ``Task`` subclass
whose ``__call__`` runs inside ``app.app_context()``. Redis comes from
``RECOVERY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); if it is unreachable the
test fails (start it with ``.ci/setup``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.dispatcher_app import start_sink
from tests.test_followup_faults import ANY_TIME, ROOT, assert_failures_recorded, assert_once_each, clients, seed

REDIS_URL = os.environ.get("RECOVERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TASK = "flask_recovery.tasks.send_due_followups"
pytestmark = [pytest.mark.config(**ANY_TIME), pytest.mark.slow]


@pytest.fixture
def redis_url():
    """The broker's URL; an unreachable Redis fails the test (never a skip)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({error}); the Celery test needs a real broker. "
            "Start it (.ci/setup) or point RECOVERY_TEST_REDIS_URL at one.",
            pytrace=False,
        )
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def sink():
    controller, sink = start_sink(delay=0.02)  # 20 ms a message, so the two runs overlap
    yield sink
    controller.stop()


@pytest.fixture
def worker(db_url, redis_url, sink, tmp_path):
    """A real Celery worker (two prefork processes) consuming a queue of its own."""
    queue = f"recovery-test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.environ.get("PYTHONPATH") or str(ROOT),  # the wheel under CI
        RECOVERY_DISPATCH_DB=db_url,
        RECOVERY_DISPATCH_SMTP_PORT=str(sink.port),
        RECOVERY_DISPATCH_BROKER=redis_url,
        RECOVERY_DISPATCH_QUEUE=queue,
    )
    command = [sys.executable, "-m", "celery", "-A", "tests.dispatcher_app:celery", "worker"]
    command += ["--pool=prefork", "--concurrency=2", "-Q", queue, "-n", f"{queue}@%h", "-l", "info"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    process.queue = queue
    process.log = log
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if " ready." not in log.read_text():
        process.kill()
        process.wait(10)
        pytest.fail(f"the Celery worker did not start:\n{log.read_text()[-3000:]}", pytrace=False)
    yield process
    process.terminate()  # warm shutdown
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture
def producer(redis_url, worker):
    """A Celery client that sends tasks by name (it does not import flask_recovery.tasks)."""
    from celery import Celery

    celery_app = Celery("recovery-test-producer", set_as_current=False)
    celery_app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        task_default_queue=worker.queue,
        broker_connection_retry_on_startup=True,
    )
    yield celery_app
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(worker.queue, f"_kombu.binding.{worker.queue}", f"_kombu.binding_permanent.{worker.queue}")
    client.close()
    celery_app.close()


def test_two_runs_at_once_and_a_duplicate_delivery_send_each_mail_once(app, session, sink, worker, producer):
    with app.app_context():
        seed(session, clients(80))
    first = producer.send_task(TASK, kwargs={"limit": 500}, ignore_result=False)
    second = producer.send_task(TASK, kwargs={"limit": 500}, ignore_result=False)
    # the broker delivers the first message again (same task id), as after a lost acknowledgement
    again = producer.send_task(TASK, kwargs={"limit": 500}, ignore_result=False, task_id=first.id)
    done = re.compile(rf"Task {re.escape(TASK)}\[([0-9a-f-]+)\] succeeded in [\d.]+s: (\{{.*\}})")
    try:
        for result in (first, second):
            result.get(timeout=90)
        deadline = time.monotonic() + 60
        while len(done.findall(worker.log.read_text())) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for result in (first, second, again):
            result.forget()
    log = worker.log.read_text()
    runs = [(task_id, ast.literal_eval(counts)) for task_id, counts in done.findall(log)]
    assert sorted(task_id for task_id, _ in runs) == sorted([first.id, first.id, second.id]), log[-3000:]
    assert all(r["failed"] == r["retry"] == 0 for _, r in runs), runs
    assert sum(r["sent"] for _, r in runs) == 80, runs
    assert sum(1 for _, r in runs if r["sent"]) >= 2, f"the two runs did not overlap: {runs}"
    with app.app_context():
        assert_once_each(sink, session, 80)
        assert_failures_recorded(session)
        assert send_nothing_due(app)


def send_nothing_due(app) -> bool:
    """Nothing is left due, now or after every lease has run out."""
    from flask_recovery.followups import send_due_followups

    later = datetime.now(UTC) + timedelta(hours=1)
    return send_due_followups(dry_run=True).due == 0 and send_due_followups(dry_run=True, now=later).due == 0
