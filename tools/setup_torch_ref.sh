#!/usr/bin/env bash
# Installs the reference stack (CPU use only) into .venv-torch for the comparison benches, the
# fixture generators and the evaluation tools in tools/ (mnist_classifier.py, fid_mnist.py): torch, diffusers, transformers, and the CompVis `ldm` package
# (from the stable-diffusion-sdkit wheel, MIT; --no-deps because its pins are for training, the
# generators only import its model modules, which need einops and omegaconf).
# Not needed to build or test the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-torch
.venv-torch/bin/pip install --quiet torch numpy safetensors diffusers==0.42.1 transformers==5.23.0 einops omegaconf more-itertools \
    scipy pillow scikit-image torchvision lpips==0.1.4
.venv-torch/bin/pip install --quiet --no-deps stable-diffusion-sdkit==2.1.5
# taming's NLayerDiscriminator / VQ losses for the first-stage training fixture
.venv-torch/bin/pip install --quiet --no-deps taming-transformers==0.0.1
.venv-torch/bin/python -c "import torch, diffusers, transformers, ldm; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
