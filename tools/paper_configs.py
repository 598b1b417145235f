"""The paper's released LDM configs (CompVis latent-diffusion models/ldm/*/config.yaml and
configs/latent-diffusion/{cin256-v2,txt2img-1p4B-eval}.yaml), transcribed, and their parameter
counts taken from the CompVis classes on the meta device (nothing is allocated).

src/models/presets.rs holds the same configs as code; tests/model_configs.rs checks every preset
against the JSON this writes (configs field by field, counts exactly).

Counters: UNet = ldm openaimodel.UNetModel; first stage = ldm Encoder + Decoder + quant_conv +
post_quant_conv (+ the VQ codebook), composed as ldm/models/autoencoder.py composes them;
ClassEmbedder = nn.Embedding; BERTEmbedder = diffusers' LDMBertModel (its port of the CompVis
x-transformers TransformerWrapper, to_logits head included, as in CompVis checkpoints);
SpatialRescaler = its bias-free 1×1 channel_mapper.
"""
import json

import torch

VQ_F4 = dict(kind="vq", embed_dim=3, n_embed=8192,
             ddconfig=dict(double_z=False, z_channels=3, resolution=256, in_channels=3, out_ch=3, ch=128,
                     ch_mult=[1, 2, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0))
VQ_F4_NOATTN = dict(VQ_F4, ddconfig=dict(VQ_F4["ddconfig"], attn_type="none"))
VQ_F8 = dict(kind="vq", embed_dim=4, n_embed=16384,
             ddconfig=dict(double_z=False, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                     ch_mult=[1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[32], dropout=0.0))
KL_F8 = dict(kind="kl", embed_dim=4,
             ddconfig=dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                     ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0))


def unet(mc, mult, attn, image_size, cin, cout, **kw):
    return dict(image_size=image_size, in_channels=cin, out_channels=cout, model_channels=mc,
                attention_resolutions=attn, num_res_blocks=2, channel_mult=mult, **kw)


def diffusion(start, end, key, image_size, channels, scale_factor=1.0):
    return dict(linear_start=start, linear_end=end, timesteps=1000, conditioning_key=key,
                image_size=image_size, channels=channels, scale_factor=scale_factor)


UNCOND_VQ4 = unet(224, [1, 2, 3, 4], [8, 4, 2], 64, 3, 3, num_head_channels=32)
PRESETS = {
    "celeba256": dict(unet=UNCOND_VQ4, first_stage=VQ_F4, cond=None,
                      diffusion=diffusion(0.0015, 0.0195, None, 64, 3)),
    "ffhq256": dict(unet=UNCOND_VQ4, first_stage=VQ_F4, cond=None,
                    diffusion=diffusion(0.0015, 0.0195, None, 64, 3)),
    "lsun_beds256": dict(unet=UNCOND_VQ4, first_stage=VQ_F4, cond=None,
                         diffusion=diffusion(0.0015, 0.0195, None, 64, 3)),
    # scale_by_std: the scale factor is measured on the first batch and stored in the checkpoint
    "lsun_churches256": dict(unet=unet(192, [1, 2, 2, 4, 4], [1, 2, 4, 8], 32, 4, 4, num_heads=8,
                                       use_scale_shift_norm=True, resblock_updown=True),
                             first_stage=KL_F8, cond=None, diffusion=diffusion(0.0015, 0.0155, None, 32, 4)),
    "cin256": dict(unet=unet(256, [1, 2, 4], [4, 2, 1], 32, 4, 4, num_head_channels=32,
                             use_spatial_transformer=True, transformer_depth=1, context_dim=512),
                   first_stage=VQ_F8, cond=dict(kind="class", n_classes=1000, embed_dim=512),
                   diffusion=diffusion(0.0015, 0.0195, "crossattn", 32, 4)),
    "cin256_v2": dict(unet=unet(192, [1, 2, 3, 5], [8, 4, 2], 64, 3, 3, num_heads=1,
                                use_spatial_transformer=True, transformer_depth=1, context_dim=512),
                      first_stage=VQ_F4, cond=dict(kind="class", n_classes=1001, embed_dim=512),
                      diffusion=diffusion(0.0015, 0.0195, "crossattn", 64, 3)),
    "text2img256": dict(unet=unet(192, [1, 2, 3, 5], [8, 4, 2], 64, 3, 3, num_head_channels=32,
                                  use_spatial_transformer=True, transformer_depth=1, context_dim=640),
                        first_stage=VQ_F4, cond=dict(kind="bert", n_embed=640, n_layer=32, vocab_size=30522, max_seq_len=77),
                        diffusion=diffusion(0.0015, 0.0195, "crossattn", 64, 3)),
    "txt2img_1p4b": dict(unet=unet(320, [1, 2, 4, 4], [4, 2, 1], 32, 4, 4, num_heads=8, use_spatial_transformer=True,
                                   transformer_depth=1, context_dim=1280, legacy=False),
                         first_stage=KL_F8, cond=dict(kind="bert", n_embed=1280, n_layer=32, vocab_size=30522, max_seq_len=77),
                         diffusion=diffusion(0.00085, 0.012, "crossattn", 32, 4, 0.18215)),
    "inpainting_big": dict(unet=unet(256, [1, 2, 3, 4], [8, 4, 2], 64, 7, 3, num_heads=8, resblock_updown=True),
                           first_stage=VQ_F4_NOATTN, cond=dict(kind="first_stage"),
                           diffusion=diffusion(0.0015, 0.0205, "concat", 64, 3)),
    "bsr_sr": dict(unet=unet(160, [1, 2, 2, 4], [16, 8], 64, 6, 3, num_head_channels=32),
                   first_stage=VQ_F4, cond=dict(kind="identity"),
                   diffusion=diffusion(0.0015, 0.0155, "concat", 64, 3)),
    "semantic_synthesis256": dict(unet=unet(128, [1, 4, 8], [32, 16, 8], 64, 6, 3, num_heads=8),
                                  first_stage=VQ_F4, cond=dict(kind="rescaler", n_stages=2, in_channels=182, out_channels=3),
                                  diffusion=diffusion(0.0015, 0.0205, "concat", 64, 3)),
    "layout2img_openimages256": dict(unet=unet(128, [1, 2, 3, 4], [8, 4, 2], 64, 3, 3, num_head_channels=32,
                                               use_spatial_transformer=True, transformer_depth=3, context_dim=512),
                                     first_stage=VQ_F4, cond=dict(kind="bert", n_embed=512, n_layer=16, vocab_size=8192, max_seq_len=92),
                                     diffusion=diffusion(0.0015, 0.0205, "crossattn", 64, 3)),
}


def count(module):
    return sum(p.numel() for p in module.parameters())


def first_stage_params(fs):
    from ldm.modules.diffusionmodules.model import Decoder, Encoder
    dd, e = fs["ddconfig"], fs["embed_dim"]
    z = dd["z_channels"]
    n = count(Encoder(**dd)) + count(Decoder(**dd))
    if fs["kind"] == "kl":  # quant_conv 2z → 2e, post_quant_conv e → z
        n += count(torch.nn.Conv2d(2 * z, 2 * e, 1)) + count(torch.nn.Conv2d(e, z, 1))
    else:  # quant_conv z → e, post_quant_conv e → z, codebook
        n += count(torch.nn.Conv2d(z, e, 1)) + count(torch.nn.Conv2d(e, z, 1)) + fs["n_embed"] * e
    return n


def cond_params(c):
    if c is None or c["kind"] in ("first_stage", "identity"):
        return 0
    if c["kind"] == "class":
        return count(torch.nn.Embedding(c["n_classes"], c["embed_dim"]))
    if c["kind"] == "rescaler":
        return count(torch.nn.Conv2d(c["in_channels"], c["out_channels"], 1, bias=False))
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel
    d = c["n_embed"]  # x-transformers Encoder defaults: 8 heads of 64, feed-forward 4·dim, GELU
    cfg = LDMBertConfig(vocab_size=c["vocab_size"], max_position_embeddings=c["max_seq_len"], encoder_layers=c["n_layer"],
                        encoder_ffn_dim=4 * d, encoder_attention_heads=8, head_dim=64, d_model=d)
    return count(LDMBertModel(cfg))


def write_param_counts(path):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    out = {}
    with torch.device("meta"):
        for name, p in PRESETS.items():
            kw = dict(p["unet"])
            if kw.get("transformer_depth", 1) > 1:  # SD2's SpatialTransformer wants a width per depth
                kw["context_dim"] = [kw["context_dim"]] * kw["transformer_depth"]
            counts = dict(unet=count(UNetModel(**kw)), first_stage=first_stage_params(p["first_stage"]),
                          cond=cond_params(p["cond"]))
            out[name] = dict(p, params=counts)
            print(f"{name}: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items()))
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
