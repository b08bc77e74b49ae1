"""Packaging for flask-recovery.

Packages are discovered, not listed by hand: every directory with an ``__init__.py`` under
``flask_recovery/`` ships (a hand-kept list once left ``flask_recovery.domain`` out of the
wheel). The Alembic branch lives at the top level in ``migrations/`` (the design card's
layout) and ships inside the package as ``flask_recovery.migrations``.
tests/test_packaging.py checks that every ``.py`` and data file of both trees is in the wheel.
"""

from setuptools import find_packages, setup

PACKAGES = find_packages(include=["flask_recovery", "flask_recovery.*"])
MIGRATIONS = ["flask_recovery.migrations"] + [
    f"flask_recovery.migrations.{name}" for name in find_packages("migrations")
]

setup(
    name="flask-recovery",
    version="0.1.0",
    description="Service recovery (3R: recognize, resolve, reconnect) for Flask booking sites",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license_expression="BSD-3-Clause",
    python_requires=">=3.10",
    packages=PACKAGES + MIGRATIONS,
    package_dir={
        "flask_recovery": "flask_recovery",
        "flask_recovery.migrations": "migrations",
    },
    package_data={
        "flask_recovery": [
            "py.typed",
            "templates/recovery/*.html",
            "templates/recovery/**/*.html",
            "templates/recovery/**/*.txt",
            "static/recovery/*",
            "translations/*/LC_MESSAGES/*.po",
            "translations/*/LC_MESSAGES/*.mo",
        ],
        "flask_recovery.migrations": ["script.py.mako", "README"],
    },
    # Flask brings blinker (signals) and itsdangerous (tokens) itself.
    install_requires=[
        "flask>=3.0",
        "flask-sqlalchemy>=3.1",
        "sqlalchemy>=2.0",
        "flask-mail>=0.10",
        "flask-wtf>=1.2",
        "wtforms>=3.1",
        "flask-babel>=4.0",
        "alembic>=1.13",
        "flask-limiter>=4.0",
    ],
    extras_require={
        # What a host adds: pip install "flask-recovery[postgres,celery,redis]"
        "postgres": ["psycopg[binary]>=3.1"],
        "celery": ["celery[redis]>=5.3"],
        "redis": ["redis>=5.0"],
        # make demo: the example site's own extra (its demo-followups SMTP sink)
        "demo": ["aiosmtpd>=1.4"],
        # make test and the developers' .venv: the test tools, every extra above included
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "aiosmtpd>=1.4",
            "playwright>=1.40",
            "hypothesis>=6",
            "psycopg[binary]>=3.1",
            "ruff>=0.5",
            "babel>=2.14",
            "build>=1.0",
            "openapi-spec-validator>=0.7",
            "jsonschema>=4.20",
            "celery[redis]>=5.3",
            "redis>=5.0",
            "schemathesis>=4.0",
        ],
    },
    classifiers=[
        "Framework :: Flask",
        "Programming Language :: Python :: 3",
    ],
)
