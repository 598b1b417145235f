"""Parity fixtures for the model zoo, made with the reference implementations (diffusers) from
config dicts with random weights. Norm weights/biases and zero-initialised output projections are
perturbed away from their init so they are tested. Weights are saved under diffusers' own key
names (the engine maps them to CompVis names in src/io/name_map.rs); inputs and outputs beside
them, all f32.

Run:  python tools/gen_fixtures.py        (needs torch, diffusers: tools/setup_torch_ref.sh)
Writes tests/fixtures/<name>.safetensors. Keep every fixture small (KBs, not MBs).
"""
import json
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


def save(name, module, tensors, meta, key_prefix=""):
    d = {f"weights.{key_prefix}{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
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


def unet_fixtures():
    from diffusers import UNet2DConditionModel

    cases = [
        # SD1-style: conv proj, heads count (diffusers' legacy `attention_head_dim` = heads), odd
        # latent (9×7) so the upsamplers must resize to the skip's size, batch 2.
        ("unet_sd1_style", dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                use_linear_projection=False), (9, 7), None),
        # SD2-style: linear proj, three levels, attention only at the two deeper levels.
        ("unet_sd2_style", dict(block_out_channels=(16, 16, 32), layers_per_block=2, attention_head_dim=(2, 2, 4),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                                use_linear_projection=True), (8, 8), None),
        # class-conditional, with concat conditioning (extra input channels).
        ("unet_class_cond", dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=2,
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                 use_linear_projection=False, num_class_embeds=5), (6, 6), [1, 4]),
    ]
    for i, (name, cfg, (h, w), labels) in enumerate(cases):
        torch.manual_seed(500 + i)
        in_ch = 6 if labels else 4
        m = UNet2DConditionModel(in_channels=in_ch, out_channels=4, cross_attention_dim=12, norm_num_groups=8, **cfg).eval()
        perturb(m, 600 + i)
        x, c = torch.randn(2, in_ch, h, w), torch.randn(2, 5, 12)
        t = torch.tensor([17.0, 803.0])
        extra = {}
        tensors = {"x": x, "context": c, "t": t}
        if labels:
            extra["class_labels"] = torch.tensor(labels)
            tensors["labels"] = torch.tensor(labels, dtype=torch.int64)
        with torch.no_grad():
            y = m(x, t, encoder_hidden_states=c, **extra).sample
        tensors["out"] = y
        heads = cfg["attention_head_dim"]
        heads = heads if isinstance(heads, tuple) else (heads,) * len(cfg["block_out_channels"])
        meta = dict(in_channels=in_ch, out_channels=4, model_channels=cfg["block_out_channels"][0],
                    channel_mult=",".join(str(c // cfg["block_out_channels"][0]) for c in cfg["block_out_channels"]),
                    num_res_blocks=cfg["layers_per_block"], heads=",".join(map(str, heads)),
                    attn_levels=",".join("1" if t.startswith("CrossAttn") else "0" for t in cfg["down_block_types"]),
                    context_dim=12, groups=8, linear_proj=int(cfg["use_linear_projection"]),
                    num_classes=cfg.get("num_class_embeds", 0) or 0)
        save(name, m, tensors, meta)


def vae_fixtures():
    from diffusers import AutoencoderKL

    torch.manual_seed(700)
    cfg = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8)
    m = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, **cfg).eval()
    perturb(m, 701)
    x = torch.randn(2, 3, 12, 10)  # non-square, two levels: latent 6×5
    z = torch.randn(2, 4, 5, 7)  # decoded on its own: an odd latent
    with torch.no_grad():
        dist = m.encode(x).latent_dist
        dec = m.decode(z).sample
    save("vae_kl", m, {"x": x, "mean": dist.mean, "logvar": dist.logvar, "z": z, "decoded": dec},
         dict(ch=16, ch_mult="1,2", num_res_blocks=1, z_channels=4, embed_dim=4, groups=8))
    # diffusers' tiled decode on the same weights: latent tiles of 4 (samples 8), overlap 0.25, on
    # a 7×9 latent so edge tiles are partial
    m.enable_tiling()
    m.tile_latent_min_size, m.tile_sample_min_size, m.tile_overlap_factor = 4, 8, 0.25
    zt = torch.randn(1, 4, 7, 9)
    with torch.no_grad():
        tiled = m.decode(zt).sample
    save_file({"z": zt, "decoded": tiled}, os.path.join(OUT, "vae_kl_tiled.safetensors"),
              metadata={"latent_tile": "4", "overlap": "0.25"})


def vq_fixtures():
    from diffusers import VQModel

    torch.manual_seed(900)
    m = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                latent_channels=4, num_vq_embeddings=16, vq_embed_dim=4, norm_num_groups=8).eval()
    perturb(m, 901)
    x = torch.randn(2, 3, 10, 12)
    with torch.no_grad():
        h = m.encode(x).latents
        zq, loss, (_, _, idx) = m.quantize(h)
        dec = m.decode(h)
    save("vq", m, {"x": x, "latents": h, "indices": idx.reshape(-1).to(torch.int64), "quantized": zq,
                   "commit_loss": loss.reshape(1), "decoded": dec.sample},
         dict(ch=16, ch_mult="1,2", num_res_blocks=1, z_channels=4, embed_dim=4, n_embed=16, groups=8, beta=0.25,
              # what save_pretrained writes as vqvae/config.json, so a test can rebuild the folder
              config_json=json.dumps({"_class_name": "VQModel", **dict(m.config)})))


def clip_fixtures():
    from transformers import CLIPTextConfig, CLIPTextModel

    for i, act in enumerate(["quick_gelu", "gelu"]):
        torch.manual_seed(800 + i)
        cfg = CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                             num_attention_heads=4, max_position_embeddings=77, hidden_act=act)
        m = CLIPTextModel(cfg).eval()
        perturb(m, 810 + i)
        ids = torch.randint(0, 1000, (2, 77), generator=torch.Generator().manual_seed(820 + i))
        with torch.no_grad():
            o = m(input_ids=ids, output_hidden_states=True)
            # penultimate layer through the final norm: diffusers' clip_skip=1
            final_norm = m.text_model.final_layer_norm if hasattr(m, "text_model") else m.final_layer_norm
            penult = final_norm(o.hidden_states[-2])
        # transformers 5 drops the `text_model.` level from CLIPTextModel's keys; real SD1.x files
        # and diffusers text_encoder/ folders (written by transformers 4) carry it, so store that.
        prefix = "" if hasattr(m, "text_model") else "text_model."
        save(f"clip_text_{act}", m, {"ids": ids, "last_hidden_state": o.last_hidden_state, "penultimate": penult},
             dict(vocab=1000, width=32, intermediate=64, layers=3, heads=4, max_positions=77, act=act), prefix)


def ldm_bert_fixture():
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

    torch.manual_seed(1100)
    # inner width (3 heads × 8 = 24) differs from d_model (20), as the real model's may
    cfg = dict(vocab_size=500, max_position_embeddings=77, encoder_layers=2, encoder_ffn_dim=48,
               encoder_attention_heads=3, head_dim=8, d_model=20)
    m = LDMBertModel(LDMBertConfig(**cfg)).eval()
    perturb(m, 1101)
    ids = torch.randint(0, 500, (2, 77), generator=torch.Generator().manual_seed(1102))
    with torch.no_grad():
        y = m(ids)[0]
    save("ldm_bert", m, {"ids": ids, "last_hidden_state": y}, dict(cfg, config_json=m.config.to_json_string()))


def sd_folder_fixture():
    """A real diffusers pipeline folder (save_pretrained, fp16 variant files) of a tiny SD1-style
    model, and the reference outputs of its three components computed from those f16 weights."""
    import json
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = os.path.join(OUT, "tiny_sd")
    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(1000)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                                attention_head_dim=2, cross_attention_dim=32, norm_num_groups=8, sample_size=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=998, eos_token_id=999, pad_token_id=999))
    for i, (name, m) in enumerate([("unet", unet), ("vae", vae), ("text_encoder", clip)]):
        perturb(m, 1001 + i)
        m.half().eval().save_pretrained(os.path.join(root, name), variant="fp16", safe_serialization=True)
        m.float()  # the f16-rounded weights, computed in f32 like the engine does
    json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
               "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
               "text_encoder": ["transformers", "CLIPTextModel"]}, open(os.path.join(root, "model_index.json"), "w"), indent=2)
    ids = torch.randint(0, 1000, (2, 77), generator=torch.Generator().manual_seed(1010))
    x, t, z = torch.randn(2, 4, 8, 8), torch.tensor([999.0, 1.0]), torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        ctx = clip(input_ids=ids).last_hidden_state
        eps = unet(x, t, encoder_hidden_states=ctx).sample
        img = vae.decode(z).sample
    save_file({"ids": ids, "context": ctx, "x": x, "t": t, "eps": eps, "z": z, "image": img},
              os.path.join(OUT, "tiny_sd_outputs.safetensors"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"tiny_sd folder: {total} bytes")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    resnet_fixtures()
    transformer_fixtures()
    unet_fixtures()
    vae_fixtures()
    vq_fixtures()
    clip_fixtures()
    sd_folder_fixture()
    ldm_bert_fixture()
