"""Writes tests/fixtures/reference_small.safetensors with the reference Python `safetensors`
library (an independent writer), so the engine's reader is tested against real files.

Run: python tools/make_safetensors_fixture.py   (needs: pip install torch safetensors)
The values are closed-form, so tests/io_safetensors.rs can check them without Python.
"""
import os
import torch
from safetensors.torch import save_file

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "reference_small.safetensors")
n = torch.arange(24, dtype=torch.float64)
tensors = {
    # value i*0.25 - 3 is exact in every float dtype below
    "model.f32": (n * 0.25 - 3).reshape(2, 3, 4).to(torch.float32),
    "model.f16": (n * 0.25 - 3).reshape(4, 6).to(torch.float16),
    "model.bf16": (n * 0.25 - 3).reshape(24).to(torch.bfloat16),
    "model.f64": (n * 0.25 - 3).reshape(6, 4),
    "ids.i64": (torch.arange(5, dtype=torch.int64) * 1_000_000_007),
    "ids.i32": torch.arange(-2, 3, dtype=torch.int32),
    "mask.bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(1.5, dtype=torch.float32),
}
save_file(tensors, out, metadata={"format": "pt", "made_by": "tools/make_safetensors_fixture.py"})
print("wrote", out, os.path.getsize(out), "bytes")
