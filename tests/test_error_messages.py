"""Errors a staff member reads: translated into her language, with a stable code beside them.

The rules raise their refusals through gettext (``InvalidInput(_("..."), field=...,
code=...)``), so the JSON API and the pages say the same thing in ``Staff.locale``, money
formatted for that locale, and a host's code tests the ``code``, never the words.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flask_recovery import Staff, domain
from flask_recovery.models import Compensation

API = "/recovery/api"
ROOT = Path(__file__).resolve().parents[1]
RU_ADMIN = Staff(id="s-admin", name="Ирина", role="admin", locale="ru")
RU_MANAGER = Staff(id="s-manager", name="Марина", role="manager", locale="ru")
EN_MANAGER = Staff(id="s-manager", name="Marina", role="manager", locale="en")
LATE = {"category": "late", "severity": "major", "description": "Мастер опоздал на 25 минут"}


def error_of(response, status):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def new_incident(client, host, **fields):
    host.staff = RU_ADMIN
    response = client.post(f"{API}/bookings/b1/incidents", json={**LATE, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def closed_incident(app, client, host, session):
    incident_id = new_incident(client, host)
    with app.app_context():
        domain.resolve_incident(session, incident_id, RU_ADMIN)
        domain.close_incident(session, incident_id, RU_ADMIN)
    return incident_id


def test_a_missing_description_in_russian(client, host, booking):
    host.staff = RU_ADMIN
    error = error_of(client.post(f"{API}/bookings/b1/incidents", json={**LATE, "description": "  "}), 422)
    assert error == {"code": "required", "field": "description", "message": "Опишите, что произошло."}


def test_a_refund_above_the_price_in_russian(client, host, booking):
    incident_id = new_incident(client, host)
    host.staff = RU_MANAGER
    error = error_of(
        client.post(f"{API}/incidents/{incident_id}/compensations", json={"kind": "refund", "amount": 150001}), 422
    )
    assert error == {
        "code": "refund_exceeds_price",
        "field": "amount",
        "message": "Вернуть можно не больше стоимости визита (1\xa0500,00\xa0€).",
    }


def test_refunds_passing_the_visits_price_in_russian(client, host, booking):
    incident_id = new_incident(client, host)
    host.staff = RU_MANAGER
    url = f"{API}/incidents/{incident_id}/compensations"
    assert client.post(url, json={"kind": "refund", "amount": 100000}).status_code == 201
    error = error_of(client.post(url, json={"kind": "refund", "amount": 80000}), 409)
    assert error["code"] == "refund_exceeds_price"
    assert error["message"] == (
        "Возвраты по этому визиту составили бы 1\xa0800,00\xa0€ — больше его стоимости (1\xa0500,00\xa0€). "
        "Вернуть можно ещё не больше 500,00\xa0€."
    )


def test_a_closed_case_in_russian(app, client, host, booking, session):
    incident_id = closed_incident(app, client, host, session)
    host.staff = RU_MANAGER
    error = error_of(
        client.post(f"{API}/incidents/{incident_id}/compensations", json={"kind": "gift", "amount": 1000}), 409
    )
    assert error == {
        "code": "incident_closed",
        "message": "Случай закрыт. Чтобы предложить компенсацию, сначала верните его в работу.",
    }
    again = error_of(client.post(f"{API}/incidents/{incident_id}/resolve", json={}), 409)
    assert again["code"] == "invalid_transition"
    assert again["message"] == "Кто-то из коллег только что изменил этот случай, сейчас его статус: Закрыт."


def test_approval_on_a_closed_case_in_russian(app, client, host, booking, session):
    incident_id = new_incident(client, host)
    request_id = client.post(
        f"{API}/incidents/{incident_id}/compensations", json={"kind": "refund", "amount": 1000}
    ).get_json()["id"]
    with app.app_context():
        domain.resolve_incident(session, incident_id, RU_ADMIN)
        domain.close_incident(session, incident_id, RU_ADMIN)
    host.staff = RU_MANAGER
    error = error_of(client.post(f"{API}/compensations/{request_id}/approve", json={}), 409)
    assert error == {
        "code": "incident_closed",
        "message": "Случай закрыт. Чтобы одобрить компенсацию, сначала верните его в работу.",
    }


def test_the_same_refusal_in_english_keeps_its_code(app, client, host, booking, session):
    incident_id = closed_incident(app, client, host, session)
    host.staff = EN_MANAGER
    error = error_of(
        client.post(f"{API}/incidents/{incident_id}/compensations", json={"kind": "gift", "amount": 1000}), 409
    )
    assert error == {"code": "incident_closed", "message": "The case is closed: reopen it before offering a remedy."}


#: A remedy the rule refuses: (body, field, code, the Russian message).
REMEDY_REFUSALS = [
    ({"kind": "lollipop", "amount": 1}, "kind", "invalid_choice", "Выберите компенсацию из списка."),
    ({"kind": "gift"}, "amount", "required", "Укажите сумму."),
    (
        {"kind": "gift", "amount": "100"},
        "amount",
        "not_whole_number",
        "Укажите сумму целым числом в копейках (центах).",
    ),
    ({"kind": "gift", "amount": 0}, "amount", "not_positive", "Сумма должна быть больше нуля."),
    (
        {"kind": "gift", "amount": 10**15},
        "amount",
        "too_large",
        "Слишком большая сумма, похоже на опечатку. Не больше 1\xa0000\xa0000,00\xa0€.",
    ),
    (
        {"kind": "redo", "amount": 100},
        "amount",
        "not_applicable",
        "Сумму указывать не нужно: эта компенсация считается от стоимости визита.",
    ),
    ({"kind": "percent_discount", "percent": 101}, "percent", "out_of_range", "Укажите процент от 1 до 100."),
    (
        {"kind": "gift", "amount": 100, "note": "a\x00b"},
        "note",
        "control_characters",
        "Уберите из текста невидимые служебные символы.",
    ),
    ({"kind": "gift", "amount": 100, "note": 7}, "note", "not_text", "Здесь нужен текст."),
]


@pytest.mark.parametrize(("body", "field", "code", "message"), REMEDY_REFUSALS, ids=[r[2] for r in REMEDY_REFUSALS])
def test_remedy_refusals_in_russian(client, host, booking, body, field, code, message):
    incident_id = new_incident(client, host)
    host.staff = RU_ADMIN
    error = error_of(client.post(f"{API}/incidents/{incident_id}/compensations", json=body), 422)
    assert error == {"code": code, "field": field, "message": message}


def test_a_reused_idempotency_key_in_russian(client, host, booking, session):
    incident_id = new_incident(client, host)
    url = f"{API}/incidents/{incident_id}/compensations"
    assert client.post(url, json={"kind": "gift", "amount": 500, "idempotency_key": "k"}).status_code == 201
    error = error_of(client.post(url, json={"kind": "gift", "amount": 700, "idempotency_key": "k"}), 409)
    assert error == {
        "code": "idempotency_key_reused",
        "field": "idempotency_key",
        "message": "Этот ключ идемпотентности уже использован для другого запроса компенсации. "
        "Для нового запроса нужен новый ключ.",
    }
    assert session.query(Compensation).count() == 1


def test_the_booking_page_shows_the_rules_refusal_in_russian(client, host, booking, session):
    """A refund above the price typed in the widget: the rule's own message beside the amount."""
    incident_id = new_incident(client, host)
    host.staff = RU_MANAGER
    response = client.post(
        f"/recovery/incidents/{incident_id}/compensations", data={"kind": "refund", "amount": "2 000"}
    )
    assert response.status_code == 422
    assert "Вернуть можно не больше стоимости визита (1\xa0500,00\xa0€)." in response.text
    assert session.query(Compensation).count() == 0


# -- no English a person reads is left in the rules ------------------------------------------

RULE_MODULES = ["flask_recovery/domain/compensations.py", "flask_recovery/domain/incidents.py"]
ERRORS = {
    "RecoveryError",
    "InvalidInput",
    "Conflict",
    "NotFound",
    "NotAllowed",
    "NotAuthenticated",
    "ConductCase",
    "VoucherError",
}
TRANSLATORS = {"_", "gettext", "lazy_gettext", "_l", "ngettext"}


def _untranslated(path: Path) -> list[str]:
    """Every error built with a message that is not a gettext call (a literal, an f-string...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS):
            continue
        message = node.args[0] if node.args else None
        if isinstance(message, ast.Name) and message.id in ("message", "missing"):
            continue  # a message chosen above, each candidate translated (checked where it is built)
        if not (isinstance(message, ast.Call) and getattr(message.func, "id", None) in TRANSLATORS):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:100]}")
    return found


@pytest.mark.parametrize("module", RULE_MODULES)
def test_every_refusal_of_the_rules_is_translated(module):
    assert _untranslated(ROOT / module) == []


def test_the_translation_guard_sees_an_english_message(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'raise InvalidInput(f"{field} is required.", field=field)\n'
        'raise Conflict("The case is closed.")\n'
        'raise Conflict(_("The case is closed."), code="incident_closed")\n'
    )
    assert [line.split(":")[1] for line in _untranslated(sample)] == ["1", "2"]
