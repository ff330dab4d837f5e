"""``python -m otel_stigmer.cli``: the same as the ``otel-stigmer`` command."""

from __future__ import annotations

import sys

from otel_stigmer.cli import main

if __name__ == "__main__":
    sys.exit(main())
