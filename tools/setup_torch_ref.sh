#!/usr/bin/env bash
# Installs the reference torch (CPU use only) into .venv-torch for the comparison benches and the
# fixture generators in tools/. Not needed to build or test the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-torch
.venv-torch/bin/pip install --quiet torch numpy safetensors
.venv-torch/bin/python -c "import torch; print('torch', torch.__version__)"
