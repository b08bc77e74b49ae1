"""The checkout widget inside a Bootstrap 5 host page, in a real browser (Debian's Chromium
through Playwright, the session's one browser from ``tests/conftest.py``).

A host app on a real HTTP server serves one checkout page three ways: bare (no CSS
framework), with Bootstrap 5's CSS, and with Bootstrap but without the widget. The CSS
comes from the npm packages ``bootstrap@5`` and ``@picocss/pico@2``, installed once into
``.cache/npm`` of the checkout (``npm`` must be on PATH; set ``RECOVERY_TEST_NPM_CACHE``
to use another directory) and served by the test app as static files: nothing is
fetched by the browser from outside.

What must hold:
- every element of the widget has the same box (relative to the widget) and the same
  computed style under Bootstrap as on the bare page, at 1280 px and on a 390 px phone
  (Bootstrap's reboot floats legends, enlarges them to 1.5rem, makes labels
  inline-block, squares buttons, moves captions below tables, ...);
- the host's own Bootstrap elements look the same whether or not the widget is there
  (the widget's CSS does not leak out);
- under Bootstrap, every text in the widget keeps WCAG AA contrast, and a 390 px phone
  gets no sideways scrolling;
- the same at 390 px under Pico (a classless framework that styles every bare element).

Screenshots for people: ``widget-bootstrap.png``, ``widget-bootstrap-mobile.png``,
``widget-plain.png`` and ``widget-pico-mobile.png`` in ``RECOVERY_TEST_SCREENSHOTS``
(default: the temp directory).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from flask import abort, got_request_exception, render_template_string, request, send_from_directory
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import Host, browser_pages, make_app

ROOT = Path(__file__).resolve().parent.parent
NPM_CACHE = Path(os.environ.get("RECOVERY_TEST_NPM_CACHE") or ROOT / ".cache" / "npm")
PACKAGES = {"bootstrap": "bootstrap@5", "pico": "@picocss/pico@2"}
CSS = {
    "bootstrap": "bootstrap/dist/css/bootstrap.min.css",
    "pico": "@picocss/pico/css/pico.min.css",
}
SCREENSHOTS = Path(os.environ.get("RECOVERY_TEST_SCREENSHOTS") or tempfile.gettempdir())
TIMEOUT_MS = 5000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Checkout · Host salon</title>
  {% if css %}<link rel="stylesheet" href="{{ url_for('vendor', filename=css) }}">{% endif %}
  <style>
    body { margin: 0; }
    .host-column { box-sizing: border-box; max-width: 720px; margin: 0 auto; padding: 0 12px; }
  </style>
</head>
<body>
  <div class="container host-column">
    <h1 class="host-title">Checkout</h1>
    <p class="host-text">Anna Smirnova, haircut, today at 10:00.</p>
    <form class="host-form">
      <fieldset>
        <legend class="host-legend">Payment</legend>
        <label class="form-label host-label" for="host-card">Card number</label>
        <input class="form-control host-input" id="host-card" name="card">
      </fieldset>
      <button type="button" class="btn btn-primary host-button">Take payment</button>
    </form>
    {% if widget %}{{ recovery_widget("b1") }}{% endif %}
    <ul class="host-list"><li>Next visit in four weeks</li></ul>
  </div>
</body>
</html>
"""


# -- the frameworks' CSS, from npm -----------------------------------------------------------


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    """``node_modules`` holding Bootstrap 5 and Pico 2, installed with npm once."""
    modules = NPM_CACHE / "node_modules"
    if all((modules / path).is_file() for path in CSS.values()):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not on PATH: the Bootstrap browser test installs bootstrap@5 and @picocss/pico@2 "
            f"with `npm install --prefix {NPM_CACHE}`. Install Node.js/npm (Debian: apt-get install npm), "
            "or deselect with -m 'not browser'.",
            pytrace=False,
        )
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(NPM_CACHE), "--no-save", "--no-audit", "--no-fund", *PACKAGES.values()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 or not all((modules / path).is_file() for path in CSS.values()):
        pytest.fail(f"npm install {' '.join(PACKAGES.values())} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return modules


# -- the host -------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


def _seed(app, host: Host) -> None:
    """Booking b1 with a case, a granted voucher and a flag: most of the widget's markup."""
    host.add_booking("b1")
    host.login("manager")
    client = app.test_client()
    page = "/recovery/bookings/b1"
    form = {
        "category": "result",
        "severity": "major",
        "description": "Colour came out orange",
        "corrective_action": "A strand test before every colouring",
    }
    assert client.post(page + "/incidents", data=form).status_code == 303
    html = client.get(page).text
    incident = re.search(r'id="incident-([\w-]+)"', html).group(1)
    granted = client.post(
        f"/recovery/incidents/{incident}/compensations",
        data={"kind": "discount", "amount": "500", "next": page, "idempotency_key": "k1"},
    )
    assert granted.status_code == 303
    flagged = client.post(
        "/recovery/clients/c1/flags",
        data={"type": "vip", "reason": "Colour went wrong: the best master next time", "booking_id": "b1"},
    )
    assert flagged.status_code == 303


@pytest.fixture
def host_server(tmp_path, vendor_dir):
    """The host app on a real HTTP server: ``/checkout?css=bootstrap|pico|&widget=1|0``."""
    host = Host()
    app = make_app(f"sqlite:///{tmp_path / 'host.sqlite'}", host=host)

    @app.get("/vendor/<path:filename>")
    def vendor(filename):
        return send_from_directory(vendor_dir, filename)

    @app.get("/checkout")
    def checkout():
        css = request.args.get("css", "")
        if css and css not in CSS:
            abort(404)
        return render_template_string(HOST_PAGE, css=CSS.get(css), widget=request.args.get("widget", "1") == "1")

    with app.app_context():
        app.recovery.create_all()
        _seed(app, host)
        app.db.session.remove()
    errors: list[BaseException] = []

    def _record(sender, exception, **extra):
        errors.append(exception)

    got_request_exception.connect(_record, app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        got_request_exception.disconnect(_record, app)
        with app.app_context():
            app.db.session.remove()
            app.recovery.drop_all()
            app.db.engine.dispose()
    assert not errors, f"the app raised while serving the browser: {errors!r}"


@pytest.fixture
def make_page(browser, host_server):
    with browser_pages(browser, host_server, TIMEOUT_MS) as make:
        yield make


# -- measuring ------------------------------------------------------------------------------

#: For every element of the widget: a path, its box relative to the widget, and the
#: computed properties a framework's element rules change.
MEASURE_WIDGET = """
(root) => {
  const props = [
    'display', 'position', 'float', 'clear', 'box-sizing', 'appearance',
    'font-family', 'font-size', 'font-weight', 'font-style', 'line-height', 'letter-spacing', 'text-transform',
    'text-align', 'text-decoration-line', 'white-space', 'vertical-align', 'list-style-type', 'caption-side',
    'color', 'background-color', 'background-image', 'box-shadow', 'opacity',
    'margin-top', 'margin-right', 'margin-bottom', 'margin-left',
    'padding-top', 'padding-right', 'padding-bottom', 'padding-left',
    'border-top-width', 'border-right-width', 'border-bottom-width', 'border-left-width',
    'border-top-style', 'border-left-style', 'border-top-color', 'border-left-color', 'border-top-left-radius',
  ];
  const origin = root.getBoundingClientRect();
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e !== root.parentElement; e = e.parentElement) {
      const cls = [...e.classList].filter(c => c.startsWith('recovery-')).slice(0, 2).join('.');
      parts.unshift(e.tagName.toLowerCase() + (cls ? '.' + cls : ''));
    }
    return parts.join(' > ');
  };
  return [root, ...root.querySelectorAll('*')]
    .filter(el => !['SCRIPT', 'LINK', 'OPTION'].includes(el.tagName))
    .filter(el => !(el.tagName === 'INPUT' && el.type === 'hidden'))
    .map(el => {
      const style = getComputedStyle(el);
      const box = el.getBoundingClientRect();
      const values = Object.fromEntries(props.map(p => [p, style.getPropertyValue(p)]));
      values.x = box.x - origin.x; values.y = box.y - origin.y;
      values.width = box.width; values.height = box.height;
      return {path: path(el), values};
    });
}
"""

HOST_STYLES = """
() => Object.fromEntries([
  'body', '.host-title', '.host-text', '.host-legend', '.host-label', '.host-input', '.host-button', '.host-list',
].map(sel => {
  const el = document.querySelector(sel);
  const s = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return [sel, {
    font: s.font, color: s.color, background: s.backgroundColor, float: s.float, display: s.display,
    margin: s.margin, padding: s.padding, border: s.border, radius: s.borderRadius, width: s.width,
    boxSizing: s.boxSizing, lineHeight: s.lineHeight, letterSpacing: s.letterSpacing, textTransform: s.textTransform,
    textDecoration: s.textDecorationLine, shadow: s.boxShadow, outline: s.outline,
    boxWidth: box.width, boxHeight: box.height,
  }];
}))
"""

#: Every element with its own visible text: its colour, the first opaque background
#: behind it, and whether it counts as large text (WCAG: 24px, or 18.66px bold).
TEXT_CONTRAST = """
(root) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0.99) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const box = el.getBoundingClientRect();
    if (!own || box.width < 2 || box.height < 2) continue;
    const s = getComputedStyle(el);
    const fg = lum(rgb(s.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(s.fontSize), weight = parseInt(s.fontWeight, 10);
    const large = size >= 24 || (size >= 18.66 && weight >= 700);
    out.push({text: el.textContent.trim().slice(0, 40), tag: el.tagName, ratio, need: large ? 3 : 4.5});
  }
  return out;
}
"""


def _open(make_page, viewport, css: str, widget: bool = True):
    page = make_page(viewport=viewport)
    page.goto(f"/checkout?css={css}&widget={1 if widget else 0}")
    page.wait_for_load_state("load")
    return page


def _widget(page):
    widget = page.locator("section#recovery-widget")
    assert widget.count() == 1
    return widget


def _numeric(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        match = re.fullmatch(r"(-?[\d.]+)px", str(value))
        return float(match.group(1)) if match else None


def _differences(plain: list[dict], framed: list[dict], tolerance: float = 0.5) -> list[str]:
    assert [e["path"] for e in plain] == [e["path"] for e in framed], "the widget's markup differs between the pages"
    found = []
    for a, b in zip(plain, framed, strict=True):
        for key, value in a["values"].items():
            other = b["values"][key]
            x, y = _numeric(value), _numeric(other)
            same = abs(x - y) <= tolerance if x is not None and y is not None else value == other
            if not same:
                found.append(f"{a['path']}: {key} {value!r} on the bare page, {other!r} inside the framework")
    return found


def _no_sideways_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
    box = _widget(page).bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= widths[1], box


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_bootstrap_changes_nothing_in_the_widget(make_page, viewport):
    plain = _open(make_page, viewport, "")
    framed = _open(make_page, viewport, "bootstrap")
    # Bootstrap really is on the host page (else the comparison proves nothing).
    assert framed.evaluate("getComputedStyle(document.querySelector('.host-legend')).float") == "left"
    assert plain.evaluate("getComputedStyle(document.querySelector('.host-legend')).float") == "none"
    wide = viewport is DESKTOP
    plain_elements = _widget(plain).evaluate(MEASURE_WIDGET)
    framed_elements = _widget(framed).evaluate(MEASURE_WIDGET)
    assert len(plain_elements) > 150  # the incident, its remedy form and voucher, the flag, the new-incident form
    paths = " ".join(e["path"] for e in plain_elements)
    for piece in ("legend", "fieldset", "label", "button", "h3", "h4", "code.recovery-voucher", "summary", "table"):
        assert piece in paths, piece
    differences = _differences(plain_elements, framed_elements)
    assert not differences, f"{len(differences)} differences, first ones:\n" + "\n".join(differences[:25])

    legend = _widget(framed).locator("legend").first
    style = legend.evaluate("e => [getComputedStyle(e).float, getComputedStyle(e).fontSize]")
    assert style == ["none", "16px"], style  # Bootstrap's legend is float: left and 1.5rem
    title = _widget(framed).locator("h2.recovery-title").evaluate("e => getComputedStyle(e).fontSize")
    assert title == "20px", title
    if wide:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        framed.screenshot(path=str(SCREENSHOTS / "widget-bootstrap.png"), full_page=True)
        plain.screenshot(path=str(SCREENSHOTS / "widget-plain.png"), full_page=True)
    else:
        _no_sideways_scroll(framed)
        _no_sideways_scroll(plain)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        framed.screenshot(path=str(SCREENSHOTS / "widget-bootstrap-mobile.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_the_host_keeps_its_bootstrap_styles_beside_the_widget(make_page, viewport):
    without = _open(make_page, viewport, "bootstrap", widget=False).evaluate(HOST_STYLES)
    beside = _open(make_page, viewport, "bootstrap", widget=True).evaluate(HOST_STYLES)
    del without["body"]["boxHeight"], beside["body"]["boxHeight"]  # the page grows by the widget, of course
    for selector, styles in without.items():
        assert beside[selector] == styles, f"{selector} changed when the widget came in"
    # and these are Bootstrap's own values, not a browser default
    assert without[".host-button"]["background"] == "rgb(13, 110, 253)"
    assert without[".host-button"]["radius"] == "6px"
    assert without[".host-legend"]["float"] == "left"
    assert without[".host-label"]["display"] == "inline-block"
    assert without[".host-title"]["font"].startswith("500 ")
    if viewport is DESKTOP:
        assert "40px" in without[".host-title"]["font"]  # 2.5rem from 1200 px up


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_every_text_of_the_widget_keeps_aa_contrast_inside_bootstrap(make_page, viewport):
    page = _open(make_page, viewport, "bootstrap")
    texts = _widget(page).evaluate(TEXT_CONTRAST)
    assert len(texts) > 40
    weak = [t for t in texts if t["ratio"] < t["need"]]
    assert not weak, weak


@pytest.mark.browser
def test_pico_on_a_phone_changes_nothing_in_the_widget(make_page):
    plain = _open(make_page, PHONE, "")
    framed = _open(make_page, PHONE, "pico")
    assert framed.evaluate("getComputedStyle(document.querySelector('.host-input')).width") != plain.evaluate(
        "getComputedStyle(document.querySelector('.host-input')).width"
    )  # Pico really styles the host page (full-width inputs)
    differences = _differences(_widget(plain).evaluate(MEASURE_WIDGET), _widget(framed).evaluate(MEASURE_WIDGET))
    assert not differences, f"{len(differences)} differences, first ones:\n" + "\n".join(differences[:25])
    _no_sideways_scroll(framed)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    framed.screenshot(path=str(SCREENSHOTS / "widget-pico-mobile.png"), full_page=True)
