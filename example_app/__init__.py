"""Салон «Бархат» / Velvet salon: a small booking site that embeds flask-recovery.

Run it with ``python -m example_app`` or ``flask --app example_app run``; fill it with
demo data with ``flask --app example_app seed`` (done automatically on first start).
"""

from __future__ import annotations

import os
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, render_template, request
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, InternalServerError

from .demo import register as register_demo
from .forms import LanguageForm, StaffForm
from .helpers import here, local_time, rubles, select_locale
from .integration import recovery
from .models import db
from .staff import current_staff, current_staff_key, staff_label

__all__ = ["create_app", "db", "recovery"]


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _database_url(instance_path: str) -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        return "sqlite:///" + os.path.join(instance_path, "salon.sqlite")
    # postgres:// (Heroku style) and a bare postgresql:// use psycopg 3, the driver we ship.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _base_url() -> str:
    """Where the links in mail point: ``RECOVERY_BASE_URL``, else this demo's own dev server."""
    return os.environ.get("RECOVERY_BASE_URL") or f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"


def _manager_emails() -> list[str]:
    value = os.environ.get("RECOVERY_MANAGER_EMAILS")
    if value is None:
        return ["marina@salon.example.com"]  # Марина, the demo manager (staff.py)
    return [address.strip() for address in value.split(",") if address.strip()]


def _configure(app: Flask, config: dict[str, Any] | None) -> None:
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-velvet-salon-secret"),
        SQLALCHEMY_DATABASE_URI=_database_url(app.instance_path),
        RECOVERY_CURRENCY="RUB",
        RECOVERY_TIMEZONE="Europe/Moscow",
        RECOVERY_DEFAULT_LOCALE="ru",
        RECOVERY_BASE_URL=_base_url(),
        RECOVERY_MANAGER_EMAILS=_manager_emails(),
        BABEL_DEFAULT_LOCALE="ru",
        BABEL_DEFAULT_TIMEZONE="Europe/Moscow",
        MAIL_SERVER=os.environ.get("MAIL_SERVER", "localhost"),
        MAIL_PORT=int(os.environ.get("MAIL_PORT", "8025")),
        MAIL_SUPPRESS_SEND=_env_flag("MAIL_SUPPRESS_SEND", False),
        MAIL_DEFAULT_SENDER=os.environ.get("MAIL_DEFAULT_SENDER", "Салон «Бархат» <hello@salon.example.com>"),
        SALON_AUTO_SEED=True,
        SALON_MAIL_DIR=os.path.join(app.instance_path, "mail"),  # where demo-followups saves .eml files
    )
    if config:
        app.config.update(config)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the salon's app; any key of ``config`` overrides the defaults."""
    app = Flask(__name__, instance_relative_config=True)
    _configure(app, config)
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    # The salon's own Babel first, so the extension uses it instead of creating one.
    Babel(app, locale_selector=select_locale)
    recovery.init_app(app, db=db)

    from .views import bp

    app.register_blueprint(bp)
    app.add_template_filter(rubles, "rubles")
    app.add_template_filter(local_time, "salon_time")

    app.add_template_global(_layout_context, "salon_layout")

    _register_errors(app)
    _register_cli(app)

    if app.config["SALON_AUTO_SEED"]:
        with app.app_context():
            _create_tables_and_seed()
    return app


def _layout_context() -> dict[str, Any]:
    """What the base layout needs: ``{% set layout = salon_layout() %}``.

    A template global rather than a context processor, so the extension's own
    templates are not handed the salon's forms.
    """
    next_path = here()
    staff_key = current_staff_key()
    staff = current_staff()
    return {
        "locale": str(get_locale() or "ru"),
        "staff": staff,
        "staff_label": staff_label(staff) if staff else "",
        "staff_key": staff_key,
        "lang_form": LanguageForm(formdata=None, next=next_path),
        "staff_form": StaffForm(formdata=None, staff=staff_key, next=next_path),
    }


def _create_tables_and_seed() -> None:
    """The salon's tables, the extension's, and the demo data once."""
    from .seed import needs_seed, seed

    db.create_all()
    if _recovery_tables() or needs_seed():
        seed()


def _recovery_tables(*, reset: bool = False) -> bool:
    """Create or upgrade the extension's tables through its migrations, as ``init-db`` does.

    A demo database kept from an earlier version is thus upgraded, not broken. One made
    by an older demo with ``create_all`` (no version table) cannot be upgraded: its
    tables are made afresh, and so are they with ``reset``. Returns whether they were.
    """
    from flask_recovery import migrate

    engine = db.engine
    afresh = reset or (migrate.current_revision(engine) is None and sa.inspect(engine).has_table("recovery_incidents"))
    if afresh:
        recovery.drop_all()  # the version table too
    migrate.upgrade(engine)
    return afresh


_ERROR_TITLES = {
    400: _l("Something is wrong with that request"),
    403: _l("You may not do that"),
    404: _l("Page not found"),
    405: _l("That does not work here"),
    409: _l("That clashes with the current state"),
    500: _l("Something went wrong on our side"),
}


def _register_errors(app: Flask) -> None:
    def _friendly(error: HTTPException):
        api_prefix = (app.config.get("RECOVERY_URL_PREFIX") or "") + "/api/"
        if request.path.startswith(api_prefix):
            return error  # the extension's JSON API answers in JSON
        code = error.code or 500
        title = _ERROR_TITLES.get(code) or _("Something went wrong")
        default = type(error).description
        message = error.description if error.description != default else None
        return render_template("salon/error.html", code=code, title=title, message=message), code

    app.register_error_handler(HTTPException, _friendly)

    @app.errorhandler(InternalServerError)
    def _server_error(error: InternalServerError):
        return _friendly(InternalServerError())


def _register_cli(app: Flask) -> None:
    @app.cli.command("seed")
    @click.option(
        "--reset-recovery",
        is_flag=True,
        help="Also drop and re-create the extension's tables (its incidents refer to booking ids).",
    )
    def seed_command(reset_recovery: bool) -> None:
        """Wipe the salon's tables and fill them with the demo data."""
        from .seed import seed

        db.create_all()
        _recovery_tables(reset=reset_recovery)
        seed()
        click.echo("Demo data ready: 6 services, 4 masters, 12 clients, 20 bookings.")

    register_demo(app)
