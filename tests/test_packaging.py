"""What a host installs: the wheel holds every module and data file of the extension, and the
metadata a host's `pip install flask-recovery[postgres,celery,redis]` reads.

Under `make test` the wheel is the one .ci/test built and installed (RECOVERY_TEST_DIST);
a developer's run builds one the same way (`python -m build`: the sdist, then the wheel
from it), so a file the sdist forgets is missing here too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = os.environ.get("RECOVERY_TEST_INSTALLED") == "1"
#: In the source tree, not in the wheel: the catalogue template (hosts get the compiled .mo).
SOURCE_ONLY = {"flask_recovery/translations/flask_recovery.pot"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    dist = os.environ.get("RECOVERY_TEST_DIST")
    if dist:
        out = Path(dist)
    else:
        assert not INSTALLED, "RECOVERY_TEST_INSTALLED=1 without RECOVERY_TEST_DIST: run it through .ci/test"
        out = tmp_path_factory.mktemp("dist")
        done = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"python -m build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (path,) = out.glob("flask_recovery-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def shipped_files() -> dict[str, Path]:
    """Every file of the two source trees, by the name it must have in the wheel."""
    files = {}
    for tree, prefix in (
        (ROOT / "flask_recovery", "flask_recovery"),
        (ROOT / "migrations", "flask_recovery/migrations"),
    ):
        for path in tree.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(tree).as_posix()}"] = path
    return {name: path for name, path in files.items() if name not in SOURCE_ONLY}


def test_wheel_contains_every_module_and_data_file(wheel):
    names = set(wheel.namelist())
    files = shipped_files()
    # the ones a host's first request or `flask recovery init-db` needs, named so a broken glob shows
    must = {
        "flask_recovery/__init__.py",
        "flask_recovery/domain/__init__.py",
        "flask_recovery/py.typed",
        "flask_recovery/templates/recovery/base.html",
        "flask_recovery/templates/recovery/_widget.html",
        "flask_recovery/static/recovery/recovery.css",
        "flask_recovery/translations/ru/LC_MESSAGES/flask_recovery.mo",
        "flask_recovery/translations/ru/LC_MESSAGES/flask_recovery.po",
        "flask_recovery/migrations/env.py",
        "flask_recovery/migrations/script.py.mako",
        "flask_recovery/migrations/versions/0001_initial.py",
    }
    assert must <= set(files), sorted(must - set(files))
    modules = [name for name in files if name.endswith(".py")]
    assert len([name for name in modules if name.startswith("flask_recovery/domain/")]) > 5, modules
    missing = sorted(set(files) - names)
    assert not missing, f"in the source tree but not in the wheel: {missing}"


def test_wheel_ships_the_extension_only(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"flask_recovery", "flask_recovery-0.1.0.dist-info"}, tops
    stray = sorted(
        set(name for name in wheel.namelist() if not name.startswith("flask_recovery-")) - set(shipped_files())
    )
    assert not stray, f"in the wheel but not in the source tree (a stale build?): {stray}"


def test_wheel_metadata_declares_the_extras_and_only_direct_dependencies(wheel):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = message_from_bytes(wheel.read(name), policy=policy.compat32)
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert not [c for c in metadata.get_all("Classifier", []) if c.startswith("License ::")]
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"postgres", "celery", "redis", "demo", "dev"} <= extras, extras
    requires = metadata.get_all("Requires-Dist")
    base = {r.split(";")[0].split(">")[0].split("[")[0].strip().lower() for r in requires if "extra ==" not in r}
    assert {"flask", "flask-sqlalchemy", "sqlalchemy", "flask-mail", "flask-wtf", "flask-babel", "alembic"} <= base
    assert not base & {"blinker", "itsdangerous"}, "Flask brings these itself"
    by_extra = {extra: [r.split(";")[0] for r in requires if f'extra == "{extra}"' in r] for extra in extras}
    assert any(r.startswith("psycopg[binary]") for r in by_extra["postgres"]), by_extra["postgres"]
    assert any(r.startswith("celery") for r in by_extra["celery"]), by_extra["celery"]
    assert any(r.startswith("redis") for r in by_extra["redis"]), by_extra["redis"]
    # the demo gets its SMTP sink, never the test tools (Playwright, schemathesis)
    assert [r.split(">")[0] for r in by_extra["demo"]] == ["aiosmtpd"], by_extra["demo"]
