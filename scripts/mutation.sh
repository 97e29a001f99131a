#!/usr/bin/env bash
# Mutation testing of the engine and features (see scripts/mutate.py): plants one single-line bug
# at a time in a temporary copy of the tree, runs that module's tests, prints the survivors and
# the score. Not in CI: a few hours over every module on two cores.
#
#   scripts/mutation.sh                               # every module
#   scripts/mutation.sh src/cnnlab/ops/conv.py        # a subset
#   scripts/mutation.sh src/cnnlab/ops/conv.py --match "channels_first"
#   scripts/mutation.sh --rerun mutation.log          # only the survivors of an earlier run
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# At the lowest priority: the machine is shared, and a mutant's tests are as slow as they are.
exec nice -n 19 env OPENBLAS_NUM_THREADS=1 "$PYTHON" scripts/mutate.py "$@"
