#!/usr/bin/env bash
# Judges the built-in default model: N samples per class with `ldm-engine sample` (DDIM, guidance
# 3), classified by an independent CNN trained on the held-out digits (tools/mnist_classifier.py),
# and FID against the held-out digits (tools/fid_mnist.py, the FID Inception weights).
#
#   bash tools/eval_default_model.sh [N_PER_CLASS] [DDIM_STEPS] [OUT_DIR]
# Needs python3 with torch, scipy, pillow, safetensors (tools/setup_torch_ref.sh makes .venv-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"; STEPS="${2:-50}"; OUT="${3:-runs/eval_default}"
PY="${PYTHON:-python3}"
BIN=target/release/ldm-engine
mkdir -p "$OUT"
[ -f "$OUT/classifier.pt" ] || "$PY" tools/mnist_classifier.py train --out "$OUT/classifier.pt"
for c in 0 1 2 3 4 5 6 7 8 9; do
    if [ "$(ls "$OUT/samples/$c" 2>/dev/null | wc -l)" -lt "$N" ]; then
        mkdir -p "$OUT/samples/$c"
        # one batch per class: seed c, so each class's samples are reproducible on their own
        /usr/bin/time -f "class $c: %e s" $BIN sample --class "$c" --batch "$N" --steps "$STEPS" --seed "$c" --out "$OUT/samples/$c/s.png" >/dev/null
    fi
done
"$PY" tools/mnist_classifier.py eval --model "$OUT/classifier.pt" --samples "$OUT/samples" --json "$OUT/accuracy.json"
"$PY" tools/fid_mnist.py --samples "$OUT/samples" --real holdout
