#!/usr/bin/env bash
# Set up (see setup.sh) and run the whole test suite, the linter first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests benchmarks
# Two pytest workers, one per core: each with two BLAS threads would oversubscribe the cores,
# and OpenBLAS threads that wait on each other stall for whole scheduler time slices.
# --dist loadgroup keeps each xdist_group (the lab's browser tests: one lab, one browser) on one
# worker.
OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup "$@"
