"""The extension's pages inside a host's layout: the recovery/base.html contract.

A host replaces ``templates/recovery/base.html`` with the three lines documented at the
top of the packaged base.html (the test reads them from there, so the documentation and
the behaviour cannot drift apart). Its layout carries a staff header ("STAFF MENU") and
its own stylesheet. The staff pages must come out inside that layout with the
extension's stylesheet; the client's pages behind the check-in mail must never show the
staff header and must always be styled. Also: every rule of the extension's CSS sits
under one of its own classes, so nothing leaks into the host's page.

Templates do not depend on the database: these tests run on a SQLite file only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import render_template_string

import flask_recovery
from flask_recovery import tokens

from .conftest import Host, make_app
from .test_followup_mail import make_followup

PACKAGE = Path(flask_recovery.__file__).resolve().parent  # the installed package (CI: the wheel)
BASE = PACKAGE / "templates" / "recovery" / "base.html"
STYLESHEETS = sorted((PACKAGE / "static" / "recovery").glob("*.css"))

LAYOUT = """<!doctype html>
<html lang="en">
<head>
  <title>{% block title %}{% endblock %} · Host salon</title>
  {% block head %}<link rel="stylesheet" href="/static/host.css">{% endblock %}
</head>
<body>
  <nav class="host-nav">STAFF MENU</nav>
  <div class="host-main">{% block content %}{% endblock %}</div>
</body>
</html>
"""


def documented_override() -> str:
    """The host's recovery/base.html exactly as the contract in base.html shows it."""
    text = BASE.read_text()
    after = text.split("three lines do it:", 1)[1]
    lines = []
    for line in after.splitlines()[1:]:
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.strip())
    assert len(lines) == 3, lines
    assert lines[0] == '{% extends "layout.html" %}'
    return "\n".join(lines) + "\n"


def head_of(html: str) -> str:
    match = re.search(r"<head>(.*?)</head>", html, re.S)
    assert match, "no <head>"
    return match.group(1)


def body_of(html: str) -> str:
    match = re.search(r"<body[^>]*>(.*)</body>", html, re.S)
    assert match, "no <body>"
    return match.group(1)


@pytest.fixture
def host_app(tmp_path):
    """A host whose templates folder has its layout and the documented recovery/base.html."""
    templates = tmp_path / "templates"
    (templates / "recovery").mkdir(parents=True)
    (templates / "layout.html").write_text(LAYOUT)
    (templates / "recovery" / "base.html").write_text(documented_override())
    host = Host()
    app = make_app(
        f"sqlite:///{tmp_path / 'layout.sqlite'}",
        {"RECOVERY_RATE_LIMIT": "3 per minute"},
        host,
    )
    app.template_folder = str(templates)
    with app.app_context():
        app.recovery.create_all()
    yield app
    with app.app_context():
        app.db.session.remove()
        app.recovery.drop_all()
        app.db.engine.dispose()


STAFF_PAGES = [
    ("admin", "/recovery/bookings/b1", "Service recovery"),
    ("admin", "/recovery/clients/c1", "Client history"),
    ("manager", "/recovery/approvals", "Requests for approval"),
    ("manager", "/recovery/budget", "Compensation spend"),
    ("manager", "/recovery/journal", "Recovery journal"),
]


@pytest.mark.parametrize(("who", "url", "heading"), STAFF_PAGES, ids=[p[1] for p in STAFF_PAGES])
def test_staff_pages_come_out_in_the_host_layout_with_the_stylesheet(host_app, who, url, heading):
    with host_app.app_context():  # booking b1 of client c1, with a case on it
        make_followup(host_app.db.session, host_app.host, locale="en")
    host_app.host.login(who)
    response = host_app.test_client().get(url)
    assert response.status_code == 200, response.text[:500]
    html = response.text
    head = head_of(html)
    assert "STAFF MENU" in body_of(html)
    assert heading in html
    assert '<link rel="stylesheet" href="/static/host.css">' in head  # the host's own head survives
    assert '<link rel="stylesheet" href="/recovery/static/recovery.css">' in head
    assert html.count('<html lang="en">') == 1 and html.count("<body>") == 1  # one page, not one nested in another
    assert re.search(r"<title>[^<]+ · Host salon</title>", head)
    if url.endswith("/journal"):  # a page adding to head calls super(): both stylesheets and the host's
        assert '<link rel="stylesheet" href="/recovery/static/journal.css">' in head


def _client_pages(app):
    """Every client page: (name, response). The rate limit is 3 per minute per address."""
    with app.app_context():
        _, _, followup = make_followup(app.db.session, app.host, locale="en")
        answer = tokens.make_token("answer", followup.id)
        unsubscribe = tokens.make_token("unsubscribe", followup.id)
    client = app.test_client()

    def at(addr):
        return {"environ_base": {"REMOTE_ADDR": addr}}

    pages = {
        "answer": client.get(f"/recovery/followups/{answer}/answer/not_right", **at("10.0.0.1")),
        "link_invalid": client.get("/recovery/followups/not-a-token/answer/good", **at("10.0.0.2")),
        "unsubscribe": client.get(f"/recovery/followups/{unsubscribe}/unsubscribe", **at("10.0.0.3")),
        "unsubscribe_done": client.post(f"/recovery/followups/{unsubscribe}/unsubscribe", **at("10.0.0.4")),
        "answer_done": client.post(
            f"/recovery/followups/{answer}/answer", data={"choice": "good", "comment": ""}, **at("10.0.0.5")
        ),
    }
    for _ in range(3):
        client.get("/recovery/followups/x/answer/good", **at("10.0.0.6"))
    pages["rate_limited"] = client.get("/recovery/followups/x/answer/good", **at("10.0.0.6"))
    return pages


CLIENT_TEXTS = {
    "answer": (200, "How are you after your visit?"),
    "answer_done": (200, "We are glad everything is all right."),
    "link_invalid": (400, "This link does not work"),
    "unsubscribe": (200, "Unsubscribe from these mails"),
    "unsubscribe_done": (200, "You are unsubscribed"),
    "rate_limited": (429, "Please wait a moment"),
}


def test_client_pages_never_show_the_staff_layout_and_are_always_styled(host_app):
    pages = _client_pages(host_app)
    assert set(pages) == set(CLIENT_TEXTS)
    for name, response in pages.items():
        status, text = CLIENT_TEXTS[name]
        html = response.text
        assert response.status_code == status, (name, response.status_code)
        assert text in html, name
        assert "STAFF MENU" not in html, name
        assert "host.css" not in html and "Host salon" not in html, name
        head = head_of(html)
        assert '<link rel="stylesheet" href="/recovery/static/client.css">' in head, name
        assert '<meta name="robots" content="noindex, nofollow">' in head, name
        assert '<main id="recovery-main" class="recovery-root recovery-client-root">' in html, name
        assert '<html lang="en">' in html, name


def test_client_pages_without_any_override_are_standalone_and_styled(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'plain.sqlite'}", {"RECOVERY_RATE_LIMIT": "3 per minute"}, Host())
    with app.app_context():
        app.recovery.create_all()
    for name, response in _client_pages(app).items():
        head = head_of(response.text)
        assert '<link rel="stylesheet" href="/recovery/static/client.css">' in head, name
        assert "recovery.css" not in response.text, name  # the staff stylesheet is not the client's
    with app.test_client().get("/recovery/static/client.css") as css:
        assert css.status_code == 200 and b".recovery-client-root" in css.data
    with app.app_context():
        app.db.engine.dispose()


def test_a_host_page_extending_the_base_keeps_the_stylesheet_with_super(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'child.sqlite'}", host=Host())
    child = (
        '{% extends "recovery/base.html" %}'
        '{% block head %}{{ super() }}<meta name="host-extra" content="1">{% endblock %}'
        '{% block content %}<div class="recovery-content"><h2>Host text</h2></div>{% endblock %}'
    )
    no_styles = '{% extends "recovery/base.html" %}{% block recovery_styles %}{% endblock %}'
    with app.test_request_context():
        head = head_of(render_template_string(child))
        bare = head_of(render_template_string(no_styles))
        body = body_of(render_template_string(child))
    assert '<link rel="stylesheet" href="/recovery/static/recovery.css">' in head
    assert '<meta name="host-extra" content="1">' in head
    assert '<main id="recovery-main" class="recovery-root" tabindex="-1">' in body and "Host text" in body
    assert "recovery.css" not in bare  # recovery_styles is the block that holds the stylesheet


# -- the CSS stays inside the extension's own elements ---------------------------------------

_OWN = re.compile(r"^(?:[a-z]+)?\.recovery-[\w-]+|^:is\((?:\s*\.recovery-[\w-]+\s*,?)+\)")


def _selectors(css: str) -> list[tuple[str, str]]:
    """Every (at-rule context, selector) of a stylesheet; comments dropped, @media entered."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    found: list[tuple[str, str]] = []
    stack: list[str] = []
    buffer = ""
    for char in css:
        if char == "{":
            prelude = buffer.strip()
            buffer = ""
            if prelude.startswith("@"):
                stack.append(prelude)
                continue
            found.extend((" ".join(stack), s.strip()) for s in _split(prelude))
            stack.append("rule")
        elif char == "}":
            buffer = ""
            if stack:
                stack.pop()
        elif stack and stack[-1] == "rule":
            continue  # declarations
        else:
            buffer += char
    return found


def _split(prelude: str) -> list[str]:
    """Split a selector list on top-level commas (not inside :is(...) or :where(...))."""
    parts, depth, current = [], 0, ""
    for char in prelude:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_the_selector_check_catches_a_leaking_rule():
    leaking = "legend { float: left; } @media (max-width: 9px) { body, .recovery-x p { margin: 0; } } :root { --a: 1 }"
    bad = [s for _, s in _selectors(leaking) if not _OWN.match(s)]
    assert bad == ["legend", "body", ":root"]


@pytest.mark.parametrize("path", STYLESHEETS, ids=[p.name for p in STYLESHEETS])
def test_every_rule_sits_under_one_of_the_extensions_classes(path):
    selectors = _selectors(path.read_text())
    assert len(selectors) > 10
    leaking = [(where, s) for where, s in selectors if not _OWN.match(s)]
    assert not leaking, f"{path.name}: selectors that reach the host's page: {leaking}"
    for _, selector in selectors:
        head = selector.split()[0]
        assert not re.match(r"^(html|body|:root|\*)\b", head), selector
