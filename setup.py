"""Packaging for flask-recovery.

The Alembic branch lives at the top level in ``migrations/`` (the design card's
layout) and is shipped inside the package as ``flask_recovery.migrations``.
"""

from setuptools import setup

setup(
    name="flask-recovery",
    version="0.1.0",
    description="Service recovery (3R: recognize, resolve, reconnect) for Flask booking sites",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=[
        "flask_recovery",
        "flask_recovery.migrations",
        "flask_recovery.migrations.versions",
    ],
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
    install_requires=[
        "flask>=3.0",
        "flask-sqlalchemy>=3.1",
        "sqlalchemy>=2.0",
        "flask-mail>=0.10",
        "flask-wtf>=1.2",
        "wtforms>=3.1",
        "flask-babel>=4.0",
        "alembic>=1.13",
        "blinker>=1.7",
        "itsdangerous>=2.1",
        "flask-limiter>=4.0",
    ],
    extras_require={
        "postgres": ["psycopg[binary]>=3.1"],
        "celery": ["celery[redis]>=5.3"],
        "redis": ["redis>=5.0"],
        "dev": [
            "pytest>=8",
            "aiosmtpd>=1.4",
            "playwright>=1.40",
            "hypothesis>=6",
            "psycopg[binary]>=3.1",
            "ruff>=0.5",
            "babel>=2.14",
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
        "License :: OSI Approved :: BSD License",
    ],
)
