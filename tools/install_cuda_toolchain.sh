#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler (nvcc, ptxas, NVVM, headers) and NVRTC from PyPI into
# .cuda-toolchain/ and prints the nvcc path. Its lib/ folder holds libnvrtc, so tests can check
# the run-time compile path without a GPU (LD_LIBRARY_PATH=.cuda-toolchain/nvidia/cu13/lib). Every part is pinned to 13.0: the GPU machines run
# driver 580 (CUDA 13.0), which cannot JIT PTX from a newer NVVM — and nvidia-cuda-nvcc's own
# dependencies (nvidia-nvvm, -crt, -runtime) would otherwise resolve to the newest release.
# Usage: NVCC=$(tools/install_cuda_toolchain.sh) cargo build
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cuda-toolchain
nvcc="$dest/nvidia/cu13/bin/nvcc"
if [ ! -x "$nvcc" ] || [ ! -e "$dest/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$dest" \
        nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
        nvidia-cuda-runtime==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 >&2
fi
"$nvcc" --version | grep -q "release 13.0" || { echo "error: $nvcc is not CUDA 13.0" >&2; exit 1; }
echo "$PWD/$nvcc"
