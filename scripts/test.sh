#!/usr/bin/env bash
# Set up (see setup.sh) and run the whole test suite, the linter first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 "$@"
