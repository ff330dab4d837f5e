#!/usr/bin/env bash
# Run the demo: an embedded reference receiver, a live page and an instrumented workflow.
# The first run creates .venv; later runs reinstall only when pyproject.toml changed
# (the install is editable, so code changes need no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.demo-installed
wanted="$(cksum pyproject.toml)"
if [ ! -x .venv/bin/otel-stigmer ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  bash scripts/bootstrap.sh
  printf '%s\n' "$wanted" > "$stamp"
fi
exec .venv/bin/otel-stigmer demo "$@"
