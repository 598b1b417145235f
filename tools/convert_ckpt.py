#!/usr/bin/env python3
"""Converts a CompVis / Stable Diffusion `.ckpt` (a torch.save pickle) to `.safetensors`.

The engine never unpickles: a pickle can run code when it is loaded, a safetensors file cannot.
This script is the one place a pickle is opened, and it opens it with torch's restricted
unpickler (weights_only=True) unless the user explicitly asks otherwise.

    python tools/convert_ckpt.py IN.ckpt OUT.safetensors [--dtype keep|f32|f16|bf16] [--ema]
        [--keep-ema-keys] [--drop-prefix PREFIX ...] [--unsafe-pickle]

Needs torch and safetensors only (tools/setup_torch_ref.sh installs both into .venv-torch).
Output: the state dict's tensors under their original names (model.diffusion_model.*,
first_stage_model.*, cond_stage_model.transformer.*), which the engine's SingleFile loader reads.
"""

import argparse
import os
import re
import sys
import zipfile
from collections import Counter


def fail(msg):
    # one line, no traceback: a bad input is the user's to fix, not a bug to debug
    print(f"convert_ckpt: {msg}", file=sys.stderr)
    sys.exit(1)


try:
    import torch
    from safetensors.torch import save_file
except ImportError as e:
    fail(f"needs torch and safetensors ({e}); tools/setup_torch_ref.sh installs both into .venv-torch")

DTYPES = {"keep": None, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
SHORT = {torch.float64: "f64", torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
         torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8",
         torch.uint8: "u8", torch.bool: "bool"}


class Stub:
    """Stands in for a class the safe unpickler does not know, e.g. the PyTorch Lightning
    ModelCheckpoint that CompVis checkpoints keep under "callbacks". It only records what it is
    given, so allowing it runs none of the file's code; a Stub where a weight should be is an error."""

    full_name = "?"

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class Refused(Exception):
    """The safe unpickler could not give the weights; --unsafe-pickle may."""


def reason(e):
    """The informative sentence of a torch.load error (they run to several paragraphs)."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*([^\n]*)", text)
    line = m.group(1) if m else next((l.strip() for l in text.splitlines() if l.strip()), "")
    line = line.split(". ")[0].rstrip(".")
    if not line and isinstance(e, EOFError):
        line = "the file ends early"
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def refused_global(e):
    m = re.search(r"GLOBAL (\S+) was not an allowed global|Unsupported class (\S+)", str(e))
    return m and (m.group(1) or m.group(2))


def check_file(path):
    """Cheap checks that name the problem better than torch's unpickler errors do."""
    if not os.path.exists(path):
        fail(f"{path}: no such file")
    if not os.path.isfile(path):
        fail(f"{path}: not a file")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        fail(f"{path}: empty file")
    if head[8:9] == b"{" and head[:2] != b"PK":
        fail(f"{path}: this looks like a .safetensors file already; the engine reads it as it is")
    # torch.save writes a zip archive (torch >= 1.6) or a protocol-2 pickle, which starts with 0x80
    if head[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        fail(f"{path}: a truncated or damaged zip archive (its central directory is missing)")
    if head[:4] != b"PK\x03\x04" and head[0] != 0x80:
        fail(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def load_safe(path):
    """torch.load(weights_only=True), retried with an inert Stub for each class it refuses;
    returns (object, stubbed names)."""
    # mmap: tensors are read only when used, so the dropped EMA copy costs no memory
    # (only a complete zip archive supports it)
    mmap = zipfile.is_zipfile(path)
    stubs = {}
    for _ in range(64):
        try:
            with torch.serialization.safe_globals([(cls, name) for name, cls in stubs.items()]):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), sorted(stubs)
        except Exception as e:  # torch raises RuntimeError, UnpicklingError, KeyError, EOFError...
            name = refused_global(e)
            if name and name not in stubs:
                stubs[name] = type(name.rsplit(".", 1)[-1], (Stub,), {"full_name": name})
                continue
            # a refusal, or a placeholder that cannot stand in (a dict subclass filled by SETITEM):
            # the unsafe unpickler may do; anything else (a truncated file) it would not
            if name or any(n.rsplit(".", 1)[-1] in str(e) for n in stubs):
                raise Refused(reason(e))
            raise
    raise Refused(f"more than {len(stubs)} unknown classes")


def find_state_dict(obj, path, stubs):
    """CompVis/Lightning checkpoints keep the weights under "state_dict" next to global_step,
    epoch, optimizer_states... (all of which are dropped); a bare state dict is the top level."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
    elif isinstance(obj, dict) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        what = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else type(obj).__name__
        if stubs:
            raise Refused(f"no state dict in {what}: it pickles whole objects")
        fail(f"{path}: no state dict found (no tensors in {what})")
    for k, v in sd.items():
        if isinstance(v, Stub):
            raise Refused(f"'{k}' is a {v.full_name}, which the safe unpickler cannot rebuild")
    return sd


def load(path, unsafe):
    """Returns (top-level object, state dict, names of stubbed classes)."""
    check_file(path)
    try:
        obj, stubs = load_safe(path)
        return obj, find_state_dict(obj, path, stubs), stubs
    except Refused as e:
        if not unsafe:
            fail(f"{path}: the safe unpickler cannot load the weights ({e}); "
                 "if you trust the file, rerun with --unsafe-pickle")
        why = str(e)
    except Exception as e:
        if not unsafe:
            fail(f"{path}: not a readable PyTorch checkpoint ({reason(e)})")
        why = reason(e)
    print(f"convert_ckpt: warning: the safe unpickler failed ({why}); --unsafe-pickle: loading with "
          "weights_only=False, which runs any code the file contains", file=sys.stderr)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, mmap=zipfile.is_zipfile(path))
    except Exception as e:
        fail(f"{path}: not a readable PyTorch checkpoint ({reason(e)})")
    return obj, find_state_dict(obj, path, []), []


def ema_name(key):
    # ldm/modules/ema.py LitEma: buffers named after model.named_parameters() of the
    # DiffusionWrapper ("diffusion_model.x.y") with the dots removed ("." is not allowed in a buffer
    # name), registered on the LatentDiffusion as self.model_ema: model.X -> model_ema.X-without-dots
    return "model_ema." + key[len("model."):].replace(".", "")


def use_ema(tensors):
    """Replaces each model.* weight by its EMA; returns (replaced, without an EMA counterpart)."""
    if not any(k.startswith("model_ema.") and k not in ("model_ema.decay", "model_ema.num_updates")
               for k in tensors):
        fail("--ema: this checkpoint has no model_ema.* weights")
    done, missing = 0, []
    for k in [k for k in tensors if k.startswith("model.")]:
        e = tensors.get(ema_name(k))
        if e is None:
            # LitEma shadows only trainable parameters; buffers keep the trained value
            missing.append(k)
            continue
        if e.shape != tensors[k].shape:
            fail(f"--ema: {ema_name(k)} has shape {list(e.shape)} but {k} has {list(tensors[k].shape)}")
        tensors[k] = e
        done += 1
    if not done:
        fail("--ema: no model.* weight has a model_ema.* counterpart")
    return done, missing


def group(key):
    parts = key.split(".")
    n = 2 if parts[0] in ("model", "cond_stage_model") and len(parts) > 2 else 1
    return ".".join(parts[:n])


def main():
    p = argparse.ArgumentParser(description="CompVis/SD .ckpt (pickle) -> .safetensors")
    p.add_argument("input", help="the .ckpt / .pt / .pth file")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--dtype", choices=list(DTYPES), default="keep",
                   help="cast floating-point tensors (integer ones are never cast); default keep")
    p.add_argument("--ema", action="store_true",
                   help="use the EMA weights (model_ema.*) for model.diffusion_model.*")
    p.add_argument("--keep-ema-keys", action="store_true",
                   help="also write the model_ema.* tensors (dropped by default: they double the file)")
    p.add_argument("--drop-prefix", action="append", default=[], metavar="PREFIX",
                   help="leave out tensors whose name starts with PREFIX (repeatable), "
                        "e.g. cond_stage_model. or first_stage_model.loss.")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="if the safe unpickler fails, load with weights_only=False: this runs any code "
                        "in the file, use it only for files you trust")
    args = p.parse_args()
    if os.path.isfile(args.input) and os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        fail("OUT is the input file")

    obj, sd, stubs = load(args.input, args.unsafe_pickle)
    tensors, dropped = {}, Counter()
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            dropped["non-tensor"] += 1
            continue
        tensors[k] = v

    note = ""
    if args.ema:
        done, missing = use_ema(tensors)
        note = f"; EMA weights for {done} of {done + len(missing)} model.* tensors"
        if missing:
            print(f"convert_ckpt: warning: --ema: {len(missing)} model.* tensors have no EMA copy "
                  f"and keep their trained value (e.g. {missing[0]})", file=sys.stderr)
    for k in list(tensors):
        if k.startswith("model_ema.") and not args.keep_ema_keys:
            dropped["model_ema.*"] += 1
            del tensors[k]
        elif any(k.startswith(pre) for pre in args.drop_prefix):
            dropped["--drop-prefix"] += 1
            del tensors[k]
    if not tensors:
        fail(f"{args.input}: no tensors left to write")

    want, out, seen = DTYPES[args.dtype], {}, set()
    for k in sorted(tensors):
        t = tensors[k].detach()
        if want is not None and t.is_floating_point() and t.dtype != want:
            t = t.to(want)
        t = t.contiguous()  # safetensors stores dense row-major bytes only
        # torch.save keeps tied/viewed tensors on one storage; safetensors refuses names sharing
        # storage, so every tensor after the first on a storage gets its own copy
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        elif t.numel():
            seen.add(ptr)
        out[k] = t

    meta = {"format": "pt", "converted_from": os.path.basename(args.input)}
    top = obj if isinstance(obj, dict) else {}
    step = top.get("global_step")
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()
    if isinstance(step, int) and not isinstance(step, bool):
        meta["global_step"] = str(step)
    if args.ema:
        meta["ema"] = "model.* weights are model_ema.* (LitEma) weights"

    # write beside the target and rename: a failed conversion never leaves half a file under OUT
    tmp = args.output + ".partial"
    try:
        save_file(out, tmp, metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes through a private (0600) temp file
        os.replace(tmp, args.output)
    except Exception as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"{args.output}: cannot write ({reason(e)})")

    if stubs:  # after the write, so that a failure stays one line
        print(f"convert_ckpt: note: stood in inert placeholders for {', '.join(stubs)}", file=sys.stderr)
    params = sum(t.numel() for t in out.values())
    nbytes = sum(t.numel() * t.element_size() for t in out.values())
    by_dtype, groups = Counter(), Counter(group(k) for k in out)
    for t in out.values():
        by_dtype[SHORT.get(t.dtype, str(t.dtype).replace("torch.", ""))] += t.numel()
    fmt = lambda c: ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
    gone = f"; dropped {fmt(dropped)}" if dropped else ""
    print(f"{args.output}: {len(out)} tensors, {params} parameters ({params / 1e6:.2f} M), {nbytes} bytes "
          f"[{fmt(by_dtype)}]; groups [{fmt(groups)}]{gone}{note}")


if __name__ == "__main__":
    main()
