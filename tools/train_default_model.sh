#!/usr/bin/env bash
# Reproduces the built-in default model (weights/mnist_class_ldm.safetensors) from scratch with the
# engine alone, on the CPU: the KL-f4 autoencoder of docs/first_stage_mnist (1,913 steps), then the
# class-conditional LDM of configs/ldm_mnist_class.json, exported in f16. Every step count is
# fixed, so the result does not depend on how fast the machine is (a run stopped by --max-minutes
# and resumed lands on the same weights: resume is exact).
#
#   bash tools/train_default_model.sh [LDM_STEPS]     (default: the steps the shipped model took)
set -euo pipefail
cd "$(dirname "$0")/.."
LDM_STEPS="${1:-$(cat docs/default_model/steps.txt 2>/dev/null || echo 2500)}"
python3 tools/fetch_datasets.py
cargo build --release --locked
BIN=target/release/ldm-engine
mkdir -p runs
# stage 1: the autoencoder (posterior mode PSNR 27.8 dB on MNIST after these steps)
[ -f runs/ae/checkpoint.safetensors ] || $BIN train autoencoder --config configs/ae_kl_f4_mnist.json --data mnist --out runs/ae --max-steps 1913
# stage 2: the diffusion model over it; every 5th digit is held out for the classifier that judges it
if [ -f runs/ldm/checkpoint.safetensors ]; then
    $BIN train ldm --data mnist --out runs/ldm --resume --max-steps "$LDM_STEPS" --export-dtype f16
else
    $BIN train ldm --config configs/ldm_mnist_class.json --data mnist --autoencoder runs/ae/checkpoint.safetensors \
        --out runs/ldm --max-steps "$LDM_STEPS" --export-dtype f16
fi
cp runs/ldm/model.safetensors weights/mnist_class_ldm.safetensors
cargo build --release --locked   # embeds the new default
echo "default model: weights/mnist_class_ldm.safetensors ($(du -h weights/mnist_class_ldm.safetensors | cut -f1))"
