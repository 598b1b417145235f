"""Parity fixtures for the model zoo, made with the reference implementations (diffusers) from
config dicts with random weights. Norm weights/biases and zero-initialised output projections are
perturbed away from their init so they are tested. Weights are saved under diffusers' own key
names (the engine maps them to CompVis names in src/io/name_map.rs); inputs and outputs beside
them, all f32.

Run:  python tools/gen_fixtures.py        (needs torch, diffusers: tools/setup_torch_ref.sh)
Writes tests/fixtures/<name>.safetensors. Keep every fixture small (KBs, not MBs).
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def perturb(module, seed):
    """Random values for every parameter, so identity inits (norm γ=1, β=0) and zero inits
    (proj_out) cannot hide a wrong mapping."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.2 if p.ndim > 1 else 0.5
            base = 1.0 if p.ndim == 1 and "norm" in name and name.endswith("weight") else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g))
    return module


def save(name, module, tensors, meta):
    d = {f"weights.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    d.update({k: v.detach().contiguous() for k, v in tensors.items()})
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(d, path, metadata={k: str(v) for k, v in meta.items()})
    print(f"{name}: {os.path.getsize(path)} bytes")


def resnet_fixtures():
    from diffusers.models.resnet import ResnetBlock2D

    cases = [
        # (name, in, out, temb, norm, groups, eps, h, w)
        ("resblock_same", 32, 32, 24, "default", 8, 1e-5, 5, 7),
        ("resblock_shortcut", 16, 32, 24, "default", 8, 1e-5, 6, 5),
        ("resblock_scale_shift", 16, 24, 20, "scale_shift", 4, 1e-5, 4, 6),
    ]
    for i, (name, cin, cout, temb, norm, groups, eps, h, w) in enumerate(cases):
        torch.manual_seed(100 + i)
        m = ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=temb, groups=groups, eps=eps,
                          time_embedding_norm=norm, non_linearity="silu", output_scale_factor=1.0).eval()
        perturb(m, 200 + i)
        x, emb = torch.randn(2, cin, h, w), torch.randn(2, temb)
        with torch.no_grad():
            y = m(x, emb)
        save(name, m, {"x": x, "emb": emb, "out": y},
             dict(in_channels=cin, out_channels=cout, emb_channels=temb, groups=groups, eps=eps,
                  scale_shift=int(norm == "scale_shift")))


def transformer_fixtures():
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    cases = [
        # (name, heads, head_dim, in_ch, ctx_dim, depth, linear_proj, groups, h, w, ctx_len)
        ("spatial_transformer_conv", 2, 8, 16, 12, 1, False, 4, 5, 6, 7),
        ("spatial_transformer_linear_depth2", 3, 8, 24, 10, 2, True, 8, 4, 3, 5),
    ]
    for i, (name, heads, hd, cin, ctx, depth, linear, groups, h, w, lc) in enumerate(cases):
        torch.manual_seed(300 + i)
        m = Transformer2DModel(num_attention_heads=heads, attention_head_dim=hd, in_channels=cin,
                               num_layers=depth, cross_attention_dim=ctx, norm_num_groups=groups,
                               use_linear_projection=linear, attention_bias=False).eval()
        perturb(m, 400 + i)
        x, c = torch.randn(2, cin, h, w), torch.randn(2, lc, ctx)
        with torch.no_grad():
            y = m(x, encoder_hidden_states=c).sample
        save(name, m, {"x": x, "context": c, "out": y},
             dict(heads=heads, head_dim=hd, in_channels=cin, context_dim=ctx, depth=depth,
                  linear_proj=int(linear), groups=groups))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    resnet_fixtures()
    transformer_fixtures()
