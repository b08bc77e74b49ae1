"""Fuzzing the JSON API from its own OpenAPI document (schemathesis), against a running example app.

The example salon runs in a real HTTP server on 127.0.0.1 (a thread), on SQLite and on
PostgreSQL, with a manager logged in through its own role switcher. Schemathesis reads
``{prefix}/api/openapi.json``, generates requests for every operation (valid ones and
invalid ones), sends them over HTTP and checks each answer: never a server error, and
every status code, content type, header and body as the document says.

The budget keeps the whole file under a minute per database on CI
(``RECOVERY_FUZZ_EXAMPLES`` per operation, 150 by default). The number of generated
cases is printed (``-s``) and recorded for the closing note.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from werkzeug.serving import make_server

from example_app import create_app
from example_app import db as salon_db
from example_app import recovery as salon_recovery

#: "A schema-valid request must be accepted" does not hold for an API with rules beyond its
#: schema (an unknown booking id, a case already resolved, an amount above one's authority
#: are schema-valid and answered 404/409/422 as the document says): that heuristic is off.
#: Every conformance check stays on, and so does the check that invalid data is refused.
LENIENT = [positive_data_acceptance]
EXAMPLES = int(os.environ.get("RECOVERY_FUZZ_EXAMPLES", "150"))
CASES: Counter[str] = Counter()
STATUSES: Counter[tuple[str, str, int]] = Counter()


@pytest.fixture
def live_salon(db_url, tmp_path):
    """The example salon served over real HTTP; yields its base URL."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "SECRET_KEY": "fuzz",
            "WTF_CSRF_ENABLED": False,
            "RECOVERY_RATE_LIMIT_ENABLED": True,
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            salon_db.session.remove()
            salon_recovery.drop_all()
            salon_db.drop_all()
            salon_db.engine.dispose()


#: Ids that exist in the seeded salon: a third of the valid cases use them, so the fuzz
#: records, resolves, grants and flags for real instead of meeting 404s only.
REAL_IDS = {
    "booking_id": st.sampled_from([str(n) for n in range(1, 21)]),
    "client_id": st.sampled_from([str(n) for n in range(1, 13)]),
    "incident_id": st.integers(1, 15),
    "compensation_id": st.integers(1, 15),
    "flag_id": st.integers(1, 15),
}


def _with_real_ids(case, ids):
    for name in list(case.path_parameters or {}):
        if name in ids:
            case.path_parameters[name] = ids[name]
    return case


def strategy_for(operation):
    """Valid requests (some on real ids) and invalid ones (wrong types, missing fields, out of range)."""
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    real = st.builds(_with_real_ids, positive, st.fixed_dictionaries(REAL_IDS))
    try:
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    except Exception:  # noqa: BLE001 (an operation with nothing to get wrong has no negative cases)
        return positive | real
    return positive | real | negative


def manager_session(base: str) -> requests.Session:
    session = requests.Session()
    switched = session.post(f"{base}/staff", data={"staff": "marina", "next": "/day"}, allow_redirects=False)
    assert switched.status_code == 303
    assert session.get(f"{base}/recovery/api/compensations/pending").status_code == 200  # a manager indeed
    return session


def test_the_api_survives_fuzzing_and_keeps_to_its_document(live_salon, db_url):
    base, app = live_salon
    http = manager_session(base)
    schema = schemathesis.openapi.from_url(f"{base}/recovery/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    started = time.monotonic()
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy_for(operation))
        def fuzz(case):
            CASES[backend] += 1
            response = case.call_and_validate(session=http, base_url=f"{base}/recovery/api", excluded_checks=LENIENT)
            STATUSES[(backend, case.method, response.status_code // 100)] += 1

        try:
            fuzz()
        except BaseException as error:  # FailureGroup is a BaseExceptionGroup: collect all, then report
            if isinstance(error, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {type(error).__name__}: {str(error)[:600]}")
    elapsed = time.monotonic() - started
    print(f"\nfuzz ({backend}): {CASES[backend]} generated cases over {len(operations)} operations in {elapsed:.0f}s")
    print(f"  responses by method and class: {sorted((k[1:], v) for k, v in STATUSES.items() if k[0] == backend)}")
    assert not failures, "\n\n".join(failures[:10])
    # the fuzz acted for real: writes went through, and bad input was refused
    assert STATUSES[(backend, "POST", 2)] >= 20, STATUSES
    assert STATUSES[(backend, "POST", 4)] >= 100, STATUSES
