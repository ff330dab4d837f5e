#!/usr/bin/env bash
# Run every check: generated stubs current, ruff, mypy --strict, the documentation site
# (mkdocs --strict), and the whole pytest suite (including the Temporal dev server, headless
# Chromium and every Python snippet of README.md and docs/), then the quick
# benchmark, whose table of ratios goes to the log (a missed goal does not fail the run; a
# crash does).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev,temporal
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is missing: run 'sudo apt-get install chromium' (browser tests need it)" >&2
    exit 1
  fi
fi
py=.venv/bin/python
$py scripts/gen_proto.py --check
$py -m ruff check .
$py -m ruff format --check .
$py -m mypy
site_dir="$(mktemp -d)"
# Not --quiet: it hides the very warnings that --strict turns into a failure.
if ! NO_MKDOCS_2_WARNING=1 $py -m mkdocs build --strict --site-dir "$site_dir" >"$site_dir.log" 2>&1; then
  grep -v "^INFO" "$site_dir.log" >&2
  exit 1
fi
rm -rf "$site_dir" "$site_dir.log"
$py -m pytest "$@"
$py -m benchmarks --quick
