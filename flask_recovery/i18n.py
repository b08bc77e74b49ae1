"""Translations of the extension's own text (Flask-Babel domain ``flask_recovery``).

The catalogues ship in ``flask_recovery/translations``. Templates call ``_r(...)``;
Python code calls :func:`gettext` / :func:`lazy_gettext` from here, so the host's own
``messages`` domain is never touched.
"""

from __future__ import annotations

import os

from flask_babel import Domain

TRANSLATIONS_DIR = os.path.join(os.path.dirname(__file__), "translations")

domain = Domain(translation_directories=[TRANSLATIONS_DIR], domain="flask_recovery")

gettext = domain.gettext
ngettext = domain.ngettext
lazy_gettext = domain.lazy_gettext
