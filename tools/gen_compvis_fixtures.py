"""Parity fixtures against the CompVis code itself (the `ldm` package: openaimodel.UNetModel,
diffusionmodules.model.Encoder/Decoder), for the options diffusers' UNet2DConditionModel does not
have: the legacy AttentionBlock of the unconditional / concat-conditioned LDMs, scale-shift norm,
resblock_updown, resampling without convs, VQ first stages without attention, the class embedder
and the spatial rescaler. Also writes the parameter counts of the paper's released configs
(tests/fixtures/paper_param_counts.json), counted on the meta device from the CompVis classes.

Weights are saved under CompVis key names (prefix "weights."), inputs and outputs beside them.
The `ldm` package comes from the stable-diffusion-sdkit wheel (MIT, the Stability/CompVis
stablediffusion tree); tools/setup_torch_ref.sh installs it with --no-deps.

Run:  python tools/gen_compvis_fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from gen_fixtures import OUT, perturb  # noqa: E402

import ldm.modules.attention as ldm_attention  # noqa: E402
import ldm.modules.diffusionmodules.model as ldm_model  # noqa: E402
import ldm.modules.diffusionmodules.openaimodel as ldm_unet  # noqa: E402
import ldm.modules.diffusionmodules.util as ldm_util  # noqa: E402
from ldm.modules.diffusionmodules.model import Decoder, Encoder  # noqa: E402
from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402

# CompVis hard-codes 32 groups in every norm, which forces ≥ 32 channels and MB-sized fixtures.
# The engine takes the group count as a config value, so the fixtures use 8 groups (and 16
# channels) by swapping the norm factories; everything else is the reference code as shipped.
GROUPS = 8
ldm_unet.normalization = lambda ch: ldm_util.GroupNorm32(GROUPS, ch)
ldm_attention.Normalize = lambda ch: torch.nn.GroupNorm(GROUPS, ch, eps=1e-6, affine=True)
ldm_model.Normalize = lambda ch, num_groups=32: torch.nn.GroupNorm(GROUPS, ch, eps=1e-6, affine=True)


def save(name, tensors, meta):
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path,
              metadata={k: json.dumps(v) for k, v in meta.items()})
    print(f"{name}: {os.path.getsize(path)} bytes")


def weights(module, prefix=""):
    return {f"weights.{prefix}{k}": v for k, v in module.state_dict().items()}


# (name, UNetModel kwargs, batch, size, context length or None, class embedder classes or None)
UNETS = [
    # celeba256 / churches style: no cross-attention, legacy AttentionBlock with a head width,
    # scale-shift norm and resampling inside ResBlocks
    ("unet_ldm_uncond", dict(in_channels=3, out_channels=3, model_channels=16, num_res_blocks=1,
                             attention_resolutions=[2], channel_mult=(1, 1, 1), num_head_channels=8,
                             use_scale_shift_norm=True, resblock_updown=True), 2, 12, None, None),
    # bsr_sr / inpainting style: concat conditioning (extra input channels), a head count, and
    # resampling without convs (average pool down, nearest up)
    ("unet_ldm_concat", dict(in_channels=7, out_channels=3, model_channels=16, num_res_blocks=2,
                             attention_resolutions=[2], channel_mult=(1, 1), num_heads=2,
                             conv_resample=False), 2, 10, None, None),
    # cin256 style: class labels through ClassEmbedder → a one-token cross-attention context
    # (SD2's SpatialTransformer wants one context width per depth when depth > 1)
    ("unet_ldm_cin", dict(in_channels=4, out_channels=4, model_channels=16, num_res_blocks=1,
                          attention_resolutions=[2], channel_mult=(1, 1), num_head_channels=8,
                          use_spatial_transformer=True, transformer_depth=2, context_dim=[24, 24]), 2, 8, 1, 11),
]


def unet_fixtures():
    for i, (name, kw, batch, size, ctx_len, n_classes) in enumerate(UNETS):
        torch.manual_seed(700 + i)
        m = perturb(UNetModel(image_size=size, **kw).eval(), 800 + i)
        x = torch.randn(batch, kw["in_channels"], size, size)
        t = torch.tensor([3.0, 917.0][:batch])
        tensors = {"x": x, "t": t}
        ctx = None
        if n_classes:
            emb = torch.nn.Embedding(n_classes, kw["context_dim"][0])
            perturb(emb, 900 + i)
            labels = torch.tensor([0, n_classes - 1][:batch])
            ctx = emb(labels[:, None])  # CompVis ClassEmbedder.forward: embedding(batch[key][:, None])
            tensors.update({"labels": labels, "weights.cond.embedding.weight": emb.weight})
        with torch.no_grad():
            # SD2's SpatialTransformer takes one context per depth level, as a list
            y = m(x, t, context=None if ctx is None else [ctx] * kw.get("transformer_depth", 1))
        tensors.update(weights(m))
        tensors["out"] = y
        meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
        meta.update(n_classes=n_classes or 0, groups=GROUPS)
        if "context_dim" in meta:
            meta["context_dim"] = meta["context_dim"][0]
        save(name, tensors, meta)


def vq_noattn_fixture():
    """vq-f4-noattn style first stage (attn_type none: no attention anywhere), plus a level with
    attention in a second model (attn_resolutions, as the cin256 VQ-f8 has)."""
    for i, (name, attn_type, attn_res) in enumerate([("vq_noattn", "none", []), ("vq_level_attn", "vanilla", [8])]):
        torch.manual_seed(1000 + i)
        dd = dict(double_z=False, z_channels=3, resolution=16, in_channels=3, out_ch=3, ch=16, ch_mult=(1, 1),
                  num_res_blocks=1, attn_resolutions=attn_res, dropout=0.0, attn_type=attn_type)
        enc, dec = Encoder(**dd).eval(), Decoder(**dd).eval()
        embed_dim, n_embed = 3, 64
        quant_conv, post_quant_conv = torch.nn.Conv2d(3, embed_dim, 1), torch.nn.Conv2d(embed_dim, 3, 1)
        codebook = torch.nn.Embedding(n_embed, embed_dim)
        for j, mod in enumerate([enc, dec, quant_conv, post_quant_conv, codebook]):
            perturb(mod, 1100 + 10 * i + j)
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            h = quant_conv(enc(x))
            # taming VectorQuantizer2: argmin of |z|² + |e|² − 2 z·e over the codebook
            z = h.permute(0, 2, 3, 1).reshape(-1, embed_dim)
            d = z.pow(2).sum(1, keepdim=True) + codebook.weight.pow(2).sum(1) - 2 * z @ codebook.weight.t()
            idx = d.argmin(1)
            zq = codebook(idx).view(2, 8, 8, embed_dim).permute(0, 3, 1, 2)
            out = dec(post_quant_conv(zq))
        tensors = {"x": x, "h": h, "indices": idx, "out": out}
        for prefix, mod in [("encoder.", enc), ("decoder.", dec), ("quant_conv.", quant_conv),
                            ("post_quant_conv.", post_quant_conv), ("quantize.", codebook)]:
            tensors.update(weights(mod, prefix))
        tensors["weights.quantize.embedding.weight"] = tensors.pop("weights.quantize.weight")
        save(name, tensors, dict(ch=16, groups=GROUPS, ch_mult=[1, 1], num_res_blocks=1, z_channels=3, embed_dim=embed_dim,
                                 n_embed=n_embed, attn_type=attn_type, attn_levels=[1] if attn_res else []))


def rescaler_fixture():
    """semantic_synthesis256's SpatialRescaler(n_stages=2, in_channels=182, out_channels=3), smaller."""
    torch.manual_seed(1200)
    mapper = perturb(torch.nn.Conv2d(12, 3, 1, bias=False), 1201)
    x = torch.randn(2, 12, 19, 22)  # odd and even sizes: each stage floors
    with torch.no_grad():
        h = x
        for _ in range(2):  # CompVis: partial(F.interpolate, mode='bilinear'), scale_factor=multiplier
            h = F.interpolate(h, scale_factor=0.5, mode="bilinear")
        y = mapper(h)
    save("spatial_rescaler", {"x": x, "out": y, "weights.channel_mapper.weight": mapper.weight},
         dict(n_stages=2, in_channels=12, out_channels=3))


if __name__ == "__main__":
    unet_fixtures()
    vq_noattn_fixture()
    rescaler_fixture()
    from paper_configs import write_param_counts
    write_param_counts(os.path.join(OUT, "paper_param_counts.json"))
