#!/usr/bin/env bash
# Run the demo: an embedded reference receiver, a live page and an instrumented workflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/otel-stigmer demo "$@"
