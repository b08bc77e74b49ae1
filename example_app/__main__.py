"""``python -m example_app``: the development server on 127.0.0.1:$PORT (default 5000)."""

import os

from . import create_app


def main() -> None:
    app = create_app()
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))


if __name__ == "__main__":
    main()
