#!/usr/bin/env python3
"""Tests tools/convert_ckpt.py on tiny checkpoints torch.save'd in the CompVis layout.

    .venv-torch/bin/python tools/test_convert_ckpt.py
    .venv-torch/bin/python tools/test_convert_ckpt.py --roundtrip SINGLE.safetensors OUT.safetensors

Not part of cargo's tests (it needs torch). The second form is what the ignored cargo test
`checkpoints::converted_ckpt_loads_like_the_single_file` runs: it wraps a single-file checkpoint's
tensors in a CompVis .ckpt (state_dict, model_ema.*, global_step, optimizer state), converts it
back and checks every tensor bit-exact, so the engine can then load the converted file.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file

CONVERT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert_ckpt.py")
TMP = tempfile.mkdtemp(prefix="convert-ckpt-test-")
FAKE_PL = os.path.join(TMP, "fake_pl")  # importable only by this process, never by the converter


def run(*args, env=None):
    p = subprocess.run([sys.executable, CONVERT, *map(str, args)], capture_output=True, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def bits(t):
    """Integer view of a float tensor, so NaN and -0.0 compare bit for bit."""
    if t.is_floating_point():
        return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def same(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {a.dtype} {list(a.shape)} vs {b.dtype} {list(b.shape)}"
    assert torch.equal(bits(a), bits(b)), f"{what}: values differ"


def make_fake_lightning():
    """A stand-in pytorch_lightning whose ModelCheckpoint lands in "callbacks" as in real CompVis
    checkpoints: the safe unpickler does not know the class, the converter does not have the module."""
    d = os.path.join(FAKE_PL, "pytorch_lightning", "callbacks")
    os.makedirs(d, exist_ok=True)
    for f in ["pytorch_lightning/__init__.py", "pytorch_lightning/callbacks/__init__.py"]:
        open(os.path.join(FAKE_PL, f), "w").close()
    with open(os.path.join(d, "model_checkpoint.py"), "w") as f:
        f.write("class ModelCheckpoint:\n    def __init__(self):\n        self.best_model_score = 0.5\n"
                "class Wrapper(dict):\n    pass\n")
    sys.path.insert(0, FAKE_PL)
    import pytorch_lightning.callbacks.model_checkpoint as mc
    return mc


def compvis_state_dict():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    special = r(2, 3)
    special[0, 0], special[0, 1], special[0, 2] = float("nan"), -0.0, float("inf")
    big = r(6, 4)  # torch.save keeps one storage for views: a slice and a strided view of it
    sd = {
        "model.diffusion_model.input_blocks.0.0.weight": r(8, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": special,
        "model.diffusion_model.time_embed.0.weight": r(16, 8).t(),  # non-contiguous
        "model.diffusion_model.out.2.weight": big[1:3],  # contiguous view at an offset
        "model.diffusion_model.out.2.bias": big[:, 0],  # strided view, same storage
        "first_stage_model.encoder.conv_in.weight": r(4, 3, 3, 3).half(),
        "first_stage_model.decoder.conv_out.bias": r(3).to(torch.bfloat16),
        "first_stage_model.quant_conv.weight": r(8, 8, 1, 1).double(),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": r(10, 8),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
        "cond_stage_model.transformer.version": "openai/clip-vit-large-patch14",  # non-tensor
    }
    sd["first_stage_model.post_quant_conv.weight"] = sd["first_stage_model.quant_conv.weight"]  # tied
    for k in [k for k in sd if k.startswith("model.")]:
        # LitEma's names: model.X -> model_ema.X without dots; values differ from the trained ones
        sd["model_ema." + k[len("model."):].replace(".", "")] = sd[k] * 0.5 + 1
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    return sd


def save_ckpt(name, sd, **top):
    path = os.path.join(TMP, name)
    torch.save({"state_dict": sd, "global_step": 470000, "epoch": 3, **top}, path)
    return path


def expect_fail(inp, words, flags=(), out=None, env=None):
    out = out or os.path.join(TMP, "failed.safetensors")
    rc, so, se = run(inp, out, *flags, env=env)
    lines = se.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and not so, f"{inp} {flags}: rc {rc}, stdout {so!r}, stderr {se!r}"
    assert "Traceback" not in se and all(w in se for w in words), f"{inp} {flags}: {se!r} lacks {words}"
    assert not os.path.exists(out) and not os.path.exists(out + ".partial"), f"{inp} {flags}: left a file"
    return lines[0]


def test_default_keeps_every_tensor_bit_exact(ckpt, sd):
    out = os.path.join(TMP, "default.safetensors")
    rc, so, se = run(ckpt, out)
    assert rc == 0 and se == "", se
    assert len(so.strip().splitlines()) == 1, so
    for g in ["model.diffusion_model: 5", "first_stage_model: 4", "cond_stage_model.transformer: 2",
              "dropped model_ema.*: 7, non-tensor: 1", "11 tensors"]:
        assert g in so, f"summary lacks {g!r}: {so}"
    got = load_file(out)
    want = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor) and not k.startswith("model_ema.")}
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        same(got[k], want[k], k)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta == {"format": "pt", "converted_from": "compvis.ckpt", "global_step": "470000"}, meta


def test_ema_substitutes_model_weights(ckpt, sd):
    out = os.path.join(TMP, "ema.safetensors")
    rc, so, se = run(ckpt, out, "--ema")
    assert rc == 0 and "EMA weights for 5 of 5 model.* tensors" in so, so + se
    got = load_file(out)
    assert not any(k.startswith("model_ema.") for k in got)
    for k, v in got.items():
        ref = sd["model_ema." + k[6:].replace(".", "")] if k.startswith("model.") else sd[k]
        same(v, ref, k)
    # keeping the EMA keys too puts one tensor under two names: the converter must unshare them
    rc, so, se = run(ckpt, out, "--ema", "--keep-ema-keys")
    assert rc == 0, se
    got = load_file(out)
    assert len(got) == 18 and got["model_ema.num_updates"].dtype == torch.int32
    same(got["model.diffusion_model.out.2.bias"], got["model_ema.diffusion_modelout2bias"], "shared")


def test_ema_names_match_compvis_litema():
    """--ema against CompVis' own LitEma on a real (tiny) openaimodel UNet: the converted UNet must
    equal the model after LitEma.copy_to, CompVis' way of applying the EMA weights."""
    try:
        from ldm.modules.diffusionmodules.openaimodel import UNetModel
        from ldm.modules.ema import LitEma
    except ImportError as e:
        return print(f"     skipped: CompVis ldm is not importable ({e})")
    torch.manual_seed(0)
    wrapper = torch.nn.Module()  # DiffusionWrapper: LatentDiffusion.model, the module LitEma shadows
    wrapper.diffusion_model = UNetModel(image_size=8, in_channels=4, out_channels=4, model_channels=32,
                                        attention_resolutions=[2], num_res_blocks=1, channel_mult=[1, 2],
                                        num_heads=2, use_spatial_transformer=True, context_dim=16)
    ema = LitEma(wrapper)
    with torch.no_grad():
        for p in wrapper.parameters():
            p.add_(torch.randn_like(p))  # training moves the weights away from the shadow...
    ema(wrapper)  # ...and one EMA step mixes them in
    sd = {"model." + k: v.clone() for k, v in wrapper.state_dict().items()}
    sd.update({"model_ema." + k: v.clone() for k, v in ema.state_dict().items()})
    ckpt = save_ckpt("litema.ckpt", sd)
    out = os.path.join(TMP, "litema.safetensors")
    rc, so, se = run(ckpt, out, "--ema")
    n = len(list(wrapper.parameters()))
    assert rc == 0 and f"EMA weights for {n} of {n} model.* tensors" in so, so + se
    ema.copy_to(wrapper)
    got = load_file(out)
    assert sorted(got) == sorted("model." + k for k in wrapper.state_dict())
    for k, v in wrapper.state_dict().items():
        same(got["model." + k], v, k)
    assert not torch.equal(got["model.diffusion_model.out.2.weight"], sd["model.diffusion_model.out.2.weight"])


def test_dtype_casts_floats_only(ckpt, sd):
    for flag, dt in [("f16", torch.float16), ("bf16", torch.bfloat16), ("f32", torch.float32)]:
        out = os.path.join(TMP, f"{flag}.safetensors")
        rc, so, se = run(ckpt, out, "--dtype", flag)
        assert rc == 0, se
        got = load_file(out)
        for k, v in got.items():
            ref = sd[k] if not sd[k].is_floating_point() else sd[k].to(dt)
            same(v, ref, f"--dtype {flag} {k}")
        assert got["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64


def test_drop_prefix(ckpt):
    out = os.path.join(TMP, "drop.safetensors")
    rc, so, se = run(ckpt, out, "--drop-prefix", "cond_stage_model.", "--drop-prefix", "first_stage_model.quant")
    assert rc == 0, se
    got = load_file(out)
    assert len(got) == 8 and not any(k.startswith("cond_stage_model.") for k in got), sorted(got)


def test_bare_legacy_state_dict():
    # pre-1.6 torch.save format (one pickle, no zip), no "state_dict" wrapper, no EMA
    sd = {"encoder.conv_in.weight": torch.randn(4, 3, 3, 3), "encoder.conv_in.bias": torch.randn(4)}
    path = os.path.join(TMP, "bare.pt")
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    out = os.path.join(TMP, "bare.safetensors")
    rc, so, se = run(path, out)
    assert rc == 0 and "groups [encoder: 2]" in so, so + se
    got = load_file(out)
    for k in sd:
        same(got[k], sd[k], k)
    expect_fail(path, ["--ema", "no model_ema"], flags=["--ema"])


def test_lightning_callbacks_and_unsafe_pickle(mc, sd):
    # the class sits outside the weights: placeholders let the safe unpickler through
    ckpt = save_ckpt("lightning.ckpt", sd, callbacks={mc.ModelCheckpoint: {"best": 0.5}}, cb=mc.ModelCheckpoint())
    out = os.path.join(TMP, "lightning.safetensors")
    rc, so, se = run(ckpt, out)
    assert rc == 0 and "ModelCheckpoint" in se and "11 tensors" in so, so + se
    # a whole pickled object instead of a dict: only the unsafe unpickler can rebuild it
    path = os.path.join(TMP, "wrapped.ckpt")
    torch.save(mc.Wrapper(state_dict={"w": torch.ones(2)}), path)
    expect_fail(path, ["--unsafe-pickle", "Wrapper"])
    env = dict(os.environ, PYTHONPATH=FAKE_PL)
    rc, so, se = run(path, out, "--unsafe-pickle", env=env)
    assert rc == 0 and "weights_only=False" in se and "1 tensors" in so, so + se
    # a weight stored as an unknown class: refused rather than silently dropped
    path = save_ckpt("odd_weight.ckpt", {"w": torch.ones(2), "v": mc.ModelCheckpoint()})
    expect_fail(path, ["'v'", "--unsafe-pickle"])


def test_bad_inputs_exit_1_with_one_line(ckpt):
    data = open(ckpt, "rb").read()
    cases = {"truncated.ckpt": data[: len(data) // 2], "text.ckpt": b"model.diffusion_model = 1\n", "empty.ckpt": b""}
    legacy = os.path.join(TMP, "legacy.pt")
    torch.save({"state_dict": {"w": torch.randn(100)}}, legacy, _use_new_zipfile_serialization=False)
    ldata = open(legacy, "rb").read()
    cases["truncated_legacy.pt"] = ldata[: len(ldata) - 50]
    for name, blob in cases.items():
        with open(os.path.join(TMP, name), "wb") as f:
            f.write(blob)
        print("   ", expect_fail(os.path.join(TMP, name), [name]))
    print("   ", expect_fail(os.path.join(TMP, "missing.ckpt"), ["no such file"]))
    no_tensors = os.path.join(TMP, "no_tensors.ckpt")
    torch.save({"global_step": 3, "state_dict": {"a": 1}}, no_tensors)
    print("   ", expect_fail(no_tensors, ["no tensors"]))
    print("   ", expect_fail(ckpt, ["cannot write"], out=os.path.join(TMP, "no_dir", "x.safetensors")))


def roundtrip(single, out):
    sd = load_file(single)
    ema = {"model_ema." + k[6:].replace(".", ""): v + 1 for k, v in sd.items() if k.startswith("model.")}
    opt = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    ckpt = os.path.join(TMP, "tiny_sd.ckpt")
    torch.save({"state_dict": {**sd, **ema}, "global_step": 7, "optimizer_states": [opt]}, ckpt)
    rc, so, se = run(ckpt, out)
    assert rc == 0, se
    print(so.strip())
    got = load_file(out)
    assert sorted(got) == sorted(sd), sorted(set(got) ^ set(sd))
    for k in sd:
        same(got[k], sd[k], k)
    ema_out = os.path.join(TMP, "tiny_sd_ema.safetensors")
    rc, so, se = run(ckpt, ema_out, "--ema")
    assert rc == 0, se
    for k, v in load_file(ema_out).items():
        same(v, ema["model_ema." + k[6:].replace(".", "")] if k.startswith("model.") else sd[k], f"--ema {k}")
    print(f"ok: {len(sd)} tensors bit-exact after .safetensors -> .ckpt -> .safetensors (and --ema)")


def main():
    if sys.argv[1:2] == ["--roundtrip"]:
        roundtrip(*sys.argv[2:4])
        return shutil.rmtree(TMP)
    sd = compvis_state_dict()
    ckpt = save_ckpt("compvis.ckpt", sd, optimizer_states=[{"state": {}, "param_groups": []}])
    mc = make_fake_lightning()
    tests = [
        ("default keeps every tensor bit-exact", lambda: test_default_keeps_every_tensor_bit_exact(ckpt, sd)),
        ("--ema substitutes model weights", lambda: test_ema_substitutes_model_weights(ckpt, sd)),
        ("--ema names match CompVis LitEma", test_ema_names_match_compvis_litema),
        ("--dtype casts floats only", lambda: test_dtype_casts_floats_only(ckpt, sd)),
        ("--drop-prefix", lambda: test_drop_prefix(ckpt)),
        ("bare legacy state dict", test_bare_legacy_state_dict),
        ("lightning callbacks and --unsafe-pickle", lambda: test_lightning_callbacks_and_unsafe_pickle(mc, sd)),
        ("bad inputs exit 1 with one line", lambda: test_bad_inputs_exit_1_with_one_line(ckpt)),
    ]
    failed = 0
    for name, f in tests:
        try:
            f()
            print(f"ok   {name}")
        except AssertionError as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed" + (f" (files kept in {TMP})" if failed else ""))
    if not failed:
        shutil.rmtree(TMP)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
