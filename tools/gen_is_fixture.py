#!/usr/bin/env python3
"""Fixture for the Inception Score (src/eval/inception_score.rs), computed by torch-fidelity 0.4.0's
own isc_features_to_metric on the same logits.

Writes tests/fixtures/is/reference.safetensors:
  logits  [50, 1008] f16  pool-like features (ReLU of normals) times a random softmax layer,
                          scaled so the class distributions are neither flat nor one-hot; stored in
                          f16 and scored by torch-fidelity from those same rounded values
  metadata: is_mean_s10, is_std_s10 (10 splits), is_mean_s3, is_std_s3 (3 splits), shuffle off
            (the engine takes a folder's images in sorted order), f64 as text

Run: /opt/torchref/bin/python tools/gen_is_fixture.py   (torch + `pip install --no-deps torch-fidelity==0.4.0`)
"""
import os
import sys

import torch
from torch_fidelity.metric_isc import isc_features_to_metric, KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_stdlib  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

g = torch.Generator().manual_seed(2016)
features = torch.relu(torch.randn(50, 2048, generator=g, dtype=torch.float64))
weight = torch.randn(1008, 2048, generator=g, dtype=torch.float64) * 0.02
logits = (features @ weight.T * 4.0).to(torch.float16)
meta = {"made_by": "tools/gen_is_fixture.py", "reference": "torch-fidelity 0.4.0 isc_features_to_metric(shuffle=False)"}
for splits in (10, 3):
    r = isc_features_to_metric(logits.to(torch.float32), splits=splits, shuffle=False)
    meta[f"is_mean_s{splits}"] = repr(r[KEY_METRIC_ISC_MEAN])
    meta[f"is_std_s{splits}"] = repr(r[KEY_METRIC_ISC_STD])
out = os.path.join(ROOT, "tests", "fixtures", "is", "reference.safetensors")
os.makedirs(os.path.dirname(out), exist_ok=True)
safetensors_stdlib.write(out, {"logits": ("F16", (50, 1008), logits.numpy().tobytes())}, meta)
print(f"wrote {out}: {meta}")
