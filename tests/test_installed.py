"""The installed package works as a host gets it: every module imports, `flask recovery` runs.

Under `make test` (.ci/test sets RECOVERY_TEST_INSTALLED=1) flask_recovery must come from the
CI virtualenv's site-packages, in this process and in the subprocesses tests start; a
checkout on the import path fails these tests. In a developer's editable .venv the
module and CLI tests run against the editable install.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sqlite3
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import flask_recovery

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = os.environ.get("RECOVERY_TEST_INSTALLED") == "1"
SITE = Path(sysconfig.get_paths()["purelib"]).resolve()
#: Alembic's environment script: it reads ``alembic.context.config`` at import, which exists
#: only while an Alembic command runs; ``flask recovery init-db`` below runs it from the wheel.
NOT_IMPORTABLE = {"flask_recovery.migrations.env"}

installed_only = pytest.mark.skipif(not INSTALLED, reason="editable .venv: `make test` checks the installed wheel")


def in_site_packages(path: str | None) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(SITE)


@installed_only
def test_flask_recovery_is_imported_from_site_packages():
    assert in_site_packages(flask_recovery.__file__), f"{flask_recovery.__file__} is not under {SITE}"
    assert not Path(flask_recovery.__file__).resolve().is_relative_to(ROOT / "flask_recovery"), flask_recovery.__file__
    from_elsewhere = {
        name: module.__file__
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "flask_recovery" and getattr(module, "__file__", None)
        if not in_site_packages(module.__file__)
    }
    assert not from_elsewhere, from_elsewhere
    # the host code the tests import still comes from the checkout (through .ci/work/path)
    import example_app
    import tests.dispatcher_app

    assert Path(example_app.__file__).resolve() == ROOT / "example_app" / "__init__.py"
    assert Path(tests.dispatcher_app.__file__).resolve() == ROOT / "tests" / "dispatcher_app.py"


PROBE = "import flask_recovery, example_app, tests.dispatcher_app; print(flask_recovery.__file__)"


@installed_only
def test_subprocesses_started_in_the_checkout_import_the_wheel():
    """What the fault and Celery tests do: a Python started with cwd at the repository root."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert in_site_packages(done.stdout.strip()), done.stdout


@installed_only
def test_a_process_with_the_checkout_on_its_path_fails_loudly():
    """.ci/installed_guard.py: the checkout put first on sys.path is refused, not tested silently."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout
    assert "not from the installed wheel" in done.stderr, done.stderr[-3000:]
    assert str(ROOT / "flask_recovery" / "__init__.py") in done.stderr


def package_modules() -> list[str]:
    """Every module of the installed package (the editable .venv maps the migrations apart)."""
    import flask_recovery.migrations

    names = {"flask_recovery.migrations"}
    for package in (flask_recovery, flask_recovery.migrations):
        for _, name, _ in pkgutil.walk_packages(package.__path__, f"{package.__name__}.", onerror=pytest.fail):
            names.add(name)
    return sorted(names)


def test_every_module_of_the_installed_package_imports():
    names = package_modules()
    # every module of the source tree is there (a package left out of the wheel is not)
    expected = {"flask_recovery.migrations", "flask_recovery.migrations.versions"}
    for path in (ROOT / "flask_recovery").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        expected.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        if path.stem != "__init__":
            expected.add(f"flask_recovery.migrations.versions.{path.stem}")
    expected.discard("flask_recovery")
    assert expected <= set(names), sorted(expected - set(names))
    assert "flask_recovery.domain.compensations" in names
    for name in names:
        if name in NOT_IMPORTABLE:
            continue
        module = importlib.import_module(name)
        if INSTALLED:
            assert in_site_packages(module.__file__), (name, module.__file__)


HOST = '''
"""A minimal host: Flask, Flask-SQLAlchemy on SQLite, flask-recovery with its loaders."""
from pathlib import Path

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_recovery import Booking as RecoveryBooking
from flask_recovery import Recovery, Staff

db = SQLAlchemy()
recovery = Recovery()


@recovery.booking_loader
def load_booking(booking_id: str) -> RecoveryBooking | None:
    return None


@recovery.staff_loader
def current_staff() -> Staff | None:
    return None


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="host-secret",
        SQLALCHEMY_DATABASE_URI="sqlite:///" + str(Path(__file__).with_name("host.sqlite")),
    )
    db.init_app(app)
    recovery.init_app(app, db=db)
    return app


app = create_app()
'''


def test_flask_recovery_cli_runs_on_a_minimal_host(tmp_path):
    (tmp_path / "host.py").write_text(textwrap.dedent(HOST))
    flask = Path(sys.executable).parent / "flask"
    assert flask.is_file(), f"no flask script beside {sys.executable}"
    # a host's shell: its own directory, none of the test suite's import path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLASK_APP")}

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(flask), "--app", "host", "recovery", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"flask recovery {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    listing = run("--help")
    commands = {line.split()[0] for line in listing.split("Commands:", 1)[1].splitlines() if line.strip()}
    expected = {
        "init-db",
        "send-followups",
        "send-notifications",
        "preview-followup",
        "stats",
        "forget-client",
        "export-client",
    }
    assert expected <= commands, listing
    # the Alembic branch ships and runs from the installed package
    run("init-db")
    with sqlite3.connect(tmp_path / "host.sqlite") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"recovery_incidents", "recovery_alembic_version"} <= tables, tables
