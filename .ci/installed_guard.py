"""CI only: every Python process of the CI virtualenv imports flask_recovery from site-packages.

.ci/test copies this file into the CI virtualenv's site-packages with a ``.pth`` line that
imports it at start-up, so it also runs in the suite's subprocesses (dispatchers, the Celery
worker, ``flask recovery ...``). Under RECOVERY_TEST_INSTALLED=1, an ``import flask_recovery``
that would load the source tree (the working directory or a PYTHONPATH entry pointing at
the checkout comes before site-packages) raises ImportError naming the path, instead of
silently testing the checkout rather than the wheel. It only checks: it never redirects.
"""

import os
import sys

if os.environ.get("RECOVERY_TEST_INSTALLED") == "1":
    import importlib.machinery
    import sysconfig

    _SITE = os.path.realpath(sysconfig.get_paths()["purelib"]) + os.sep

    class InstalledOnly:
        """Meta-path finder: refuses a ``flask_recovery`` found outside site-packages."""

        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "flask_recovery":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            origin = spec.origin if spec is not None else None
            if origin and not os.path.realpath(origin).startswith(_SITE):
                raise ImportError(
                    f"flask_recovery would be imported from {origin}, not from the installed wheel in "
                    f"{_SITE} (RECOVERY_TEST_INSTALLED=1): keep the checkout off sys.path (run the "
                    "process outside it, PYTHONPATH from the environment; see .ci/test)",
                    name=name,
                )
            return spec

    sys.meta_path.insert(0, InstalledOnly())
