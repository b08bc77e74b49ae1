"""`pip install .` ships a working extension: templates, static files, catalogues, migrations."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_everything_the_extension_needs(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("flask_recovery-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "flask_recovery/py.typed",
        "flask_recovery/templates/recovery/base.html",
        "flask_recovery/templates/recovery/_widget.html",
        "flask_recovery/static/recovery/recovery.css",
        "flask_recovery/static/recovery/recovery.js",
        "flask_recovery/translations/ru/LC_MESSAGES/flask_recovery.mo",
        "flask_recovery/migrations/env.py",
        "flask_recovery/migrations/script.py.mako",
        "flask_recovery/migrations/versions/0001_initial.py",
    }
    assert expected <= names, sorted(expected - names)
    for template in (ROOT / "flask_recovery" / "templates").rglob("*.*"):
        assert str(template.relative_to(ROOT)) in names, template
    assert not any(name.startswith(("tests/", "example_app/")) for name in names)
