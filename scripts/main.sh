#!/usr/bin/env bash
# Set up (see setup.sh) and run the main job: train the default CNN on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/cnnlab train "$@"
