"""Writes a .safetensors file with the standard library alone, for the tools that must run where
the safetensors package is absent: tools/fetch_fid_inception.py (CI, no torch or numpy) and
tools/torch_sd15/bench.py (the GPU machines, no network to install it)."""
import json
import os
import struct


def write(path, entries, metadata=None):
    """entries: {name: (dtype, shape, raw little-endian bytes)}, dtype as safetensors spells it
    ("F32", "F16", "BF16", …). Written to a temp file and renamed, so a reader never sees half."""
    header, offset = {}, 0
    for name, (dtype, shape, data) in entries.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in entries.values():
            f.write(data)
    os.replace(tmp, path)
