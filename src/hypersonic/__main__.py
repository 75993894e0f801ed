"""``python -m hypersonic module:app ...``: the same command as ``hypersonic``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
