"""The extension's own catalogue (text domain ``flask_recovery``) is complete and compiled.

Self-contained on purpose: no fixture from ``conftest.py``, only ``tmp_path``.

When a test here fails, refresh the catalogues from the repository root::

    .venv/bin/pybabel extract -F babel.cfg -k _r -k ngettext_r:1,2 -k _l -k lazy_gettext -k gettext -k ngettext:1,2 \\
        --no-wrap --sort-by-file -o flask_recovery/translations/flask_recovery.pot .
    .venv/bin/pybabel update -D flask_recovery -i flask_recovery/translations/flask_recovery.pot \\
        -d flask_recovery/translations --no-wrap
    # translate every empty or fuzzy msgstr in ru/LC_MESSAGES/flask_recovery.po, then
    .venv/bin/pybabel compile -D flask_recovery -d flask_recovery/translations --statistics
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "flask_recovery" / "translations"
DOMAIN = "flask_recovery"
RU_PO = TRANSLATIONS / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"

#: The same keywords as the documented ``pybabel extract`` command (on top of Babel's defaults,
#: which already include ``_``, ``gettext`` and ``ngettext``).
KEYWORDS = ["_r", "ngettext_r:1,2", "_l", "lazy_gettext", "gettext", "ngettext:1,2"]

#: A named printf placeholder as Python's ``%`` operator reads it: ``%(name)s``, ``%(n)d``, ``%(x).1f``.
PLACEHOLDER = re.compile(r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")

#: A git checkout writes ``flask_recovery.mo`` a moment before ``flask_recovery.po`` (index
#: order), so a fresh clone has the .mo a few microseconds older; allow that, not a real lag.
MTIME_SLACK_SECONDS = 2.0


def _read_po(path: Path) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, domain=DOMAIN)


def _read_mo(path: Path) -> Catalog:
    with path.open("rb") as fh:
        return read_mo(fh)


def _key(message) -> tuple:
    """A message's identity: (msgid or (msgid, msgid_plural), msgctxt)."""
    ident = tuple(message.id) if isinstance(message.id, (list, tuple)) else message.id
    return ident, message.context


def _strings(message) -> tuple[str, ...]:
    return tuple(message.string) if isinstance(message.string, (list, tuple)) else (message.string,)


def _ids(message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, (list, tuple)) else (message.id,)


def _label(key: tuple) -> str:
    ident, context = key
    text = " / ".join(ident) if isinstance(ident, tuple) else ident
    return f"{text!r}" + (f" [context {context!r}]" if context else "")


def _po_files() -> list[Path]:
    return sorted(TRANSLATIONS.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Catalog:
    """Extract the messages afresh, exactly as the documented command does."""
    pot = tmp_path_factory.mktemp("pot") / f"{DOMAIN}.pot"
    command = [sys.executable, "-m", "babel.messages.frontend", "--quiet", "extract", "-F", "babel.cfg"]
    for keyword in KEYWORDS:
        command += ["-k", keyword]
    command += ["--no-wrap", "--sort-by-file", "-o", str(pot), "."]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pybabel extract failed:\n{done.stdout}\n{done.stderr}"
    catalog = _read_po(pot)
    assert len([m for m in catalog if m.id]) > 0, "extraction found no messages: is babel.cfg right?"
    return catalog


@pytest.fixture(scope="module")
def russian() -> Catalog:
    assert RU_PO.is_file(), f"{RU_PO.relative_to(ROOT)} is missing"
    return _read_po(RU_PO)


def test_extraction_reads_python_and_templates(extracted):
    """babel.cfg covers both the Python code and the ``_r(...)`` calls in the templates."""
    sources = {Path(filename).as_posix() for m in extracted for filename, _line in m.locations}
    assert any(s.endswith(".py") for s in sources), sorted(sources)
    assert any(s.startswith("flask_recovery/templates/") for s in sources), sorted(sources)
    assert all(s.startswith("flask_recovery/") for s in sources), sorted(sources)


def test_every_message_has_a_russian_translation(extracted, russian):
    missing = []
    for message in extracted:
        if not message.id:
            continue
        key = _key(message)
        translated = russian.get(message.id, context=message.context)
        if translated is None:
            missing.append(f"{_label(key)} (not in the .po: run pybabel update)")
        elif translated.fuzzy:
            missing.append(f"{_label(key)} (fuzzy)")
        elif not all(s.strip() for s in _strings(translated)) or (
            isinstance(message.id, (list, tuple)) and len(_strings(translated)) != russian.num_plurals
        ):
            missing.append(f"{_label(key)} (empty)")
    assert not missing, f"{len(missing)} message(s) lack a Russian translation:\n" + "\n".join(missing)


def test_russian_header_has_russian_plural_forms(russian):
    assert str(russian.locale) == "ru"
    assert russian.num_plurals == 3
    assert russian.plural_expr.replace(" ", "") == (
        "(n%10==1&&n%100!=11?0:n%10>=2&&n%10<=4&&(n%100<10||n%100>=20)?1:2)"
    )


@pytest.mark.parametrize("po_path", _po_files(), ids=lambda p: p.parent.parent.name)
def test_compiled_catalogue_matches_the_po(po_path):
    mo_path = po_path.with_suffix(".mo")
    assert mo_path.is_file(), f"{mo_path.relative_to(ROOT)} is missing: run pybabel compile"
    lag = po_path.stat().st_mtime - mo_path.stat().st_mtime
    assert lag <= MTIME_SLACK_SECONDS, (
        f"{mo_path.relative_to(ROOT)} is older than its .po by {lag:.0f} s: run pybabel compile"
    )

    po = _read_po(po_path)
    mo = _read_mo(mo_path)
    # What ``pybabel compile`` puts in a .mo: translated, non-fuzzy messages only.
    expected = {_key(m): _strings(m) for m in po if m.id and any(_strings(m)) and not m.fuzzy}
    compiled = {_key(m): _strings(m) for m in mo if m.id}

    stale = [_label(k) for k in expected if k in compiled and compiled[k] != expected[k]]
    absent = [_label(k) for k in expected if k not in compiled]
    extra = [_label(k) for k in compiled if k not in expected]
    problems = [f"changed since compile: {s}" for s in stale]
    problems += [f"not compiled: {s}" for s in absent]
    problems += [f"only in the .mo: {s}" for s in extra]
    assert not problems, f"{mo_path.relative_to(ROOT)} does not match its .po (run pybabel compile):\n" + "\n".join(
        problems
    )
    assert mo.num_plurals == po.num_plurals


@pytest.mark.parametrize("po_path", _po_files(), ids=lambda p: p.parent.parent.name)
def test_placeholders_are_kept(po_path):
    catalog = _read_po(po_path)
    wrong = []
    for message in catalog:
        if not message.id:
            continue
        ids = _ids(message)
        wanted = Counter(PLACEHOLDER.findall(ids[-1]))
        names = {name: 1 for text in ids for name in re.findall(r"%\(([^)]*)\)", text)}
        for form in _strings(message):
            if not form:
                continue  # untranslated: falls back to the msgid
            if Counter(PLACEHOLDER.findall(form)) != wanted:
                wrong.append(f"{_label(_key(message))} -> {form!r}")
            elif names:
                try:
                    form % names
                except (KeyError, ValueError, TypeError) as exc:
                    wrong.append(f"{_label(_key(message))} -> {form!r} ({exc})")
    assert not wrong, "placeholders differ between msgid and msgstr:\n" + "\n".join(wrong)


def test_flask_babel_serves_russian_through_the_extension_domain():
    """The compiled catalogue is found where flask_recovery.i18n looks for it."""
    from flask import Flask
    from flask_babel import Babel, force_locale

    import flask_recovery
    from flask_recovery import i18n

    # the installed package's own catalogues (the wheel under CI, the checkout in an editable install)
    assert Path(i18n.TRANSLATIONS_DIR).resolve() == (Path(flask_recovery.__file__).parent / "translations").resolve()
    assert (Path(i18n.TRANSLATIONS_DIR) / "ru" / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file()
    app = Flask(__name__)
    Babel(app, default_locale="en")
    with app.test_request_context():
        with force_locale("ru"):
            assert i18n.gettext("No such booking.") == "Такой записи нет."
            assert i18n.gettext("Booking %(id)s", id=7) == "Запись 7"
        with force_locale("en"):
            assert i18n.gettext("No such booking.") == "No such booking."
