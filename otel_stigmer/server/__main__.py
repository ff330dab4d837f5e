"""``python -m otel_stigmer.server``: run the reference receiver, like ``otel-stigmer serve``."""

from __future__ import annotations

from otel_stigmer.server.cli import serve_main

if __name__ == "__main__":
    raise SystemExit(serve_main())
