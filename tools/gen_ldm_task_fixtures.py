"""The paper's conditioned sampling tasks, as references for src/pipelines/ldm.rs and
ldm_conditioning.rs (tests/pipeline_ldm_tasks.rs). Every case steps diffusers' DDIMScheduler with
the model's LDM schedule (scaled_linear = CompVis "linear", leading, offset 1, η 0), as
tools/gen_ldm_pipeline_fixtures.py does; 5 steps, which divide 1000, so CompVis' own DDIMSampler
walks the same timesteps (checked here for inpainting).

- ldm_inpaint: CompVis scripts/inpaint.py step for step (image and mask in [0, 1], mask binarised
  at 0.5, masked image = (1 − mask)·image, all three ×2 − 1; c = VQ encode (encoder + quant_conv,
  not quantised) of the masked image; cc = F.interpolate(mask, size=c's) (nearest); the UNet sees
  cat(x, c, cc); decode_first_stage quantises; paste-back), with the CompVis modules of the
  fixtures unet_ldm_concat (7 → 3 channels) and vq_noattn (f = 2). The latents are also run
  through ldm's DDIMSampler.sample (the script's call) on a stand-in for LatentDiffusion that
  holds its schedule buffers and DiffusionWrapper's concat branch, and must agree.
- ldm_superres: diffusers' LDMSuperResolutionPipeline with random weights (a tiny UNet2DModel,
  in_channels 6, and a tiny VQModel), low-res image tensor in [−1, 1], output_type "pt". The UNet
  is also converted to CompVis UNetModel names (legacy AttentionBlock: q, k, v fused per head into
  qkv) and the converted CompVis model must give the same output, so the fixture stores it under
  CompVis names (`weights.unet.`); the VQModel is stored under diffusers names (`weights.vqvae.`).
- ldm_semantic: semantic synthesis as CompVis trains and samples it: label map → one-hot
  (np.eye(n)[seg], taming sflckr.py) → [N, C, H, W] (get_input's rearrange) → SpatialRescaler
  (vendored CompVis class, the spatial_rescaler fixture's 12 → 3 mapper, 2 stages) → concat to the
  latents of the CompVis UNetModel above (6 → 3). A second case samples the same model at a 12×20
  latent, above its 8×8 training size and not square (the paper's convolutional sampling).
- ldm_text2img: the paper's text-to-image, diffusers' LDMTextToImagePipeline with classifier-free
  guidance 3 against the empty prompt: random LDMBert weights, a few-word WordPiece vocabulary
  (BertTokenizer), the UNet and KL autoencoder of the tiny_sd fixture folder, DDIMScheduler with
  txt2img_1p4b's schedule (0.00085–0.012).
- ldm_layout: layout-to-image: taming's ObjectsBoundingBoxConditionalBuilder (vendored) turns
  boxes into ids, the vendored CompVis BERTEmbedder(use_tokenizer=False) (x-transformers
  TransformerWrapper) turns them into the context, cross-attended by the unet_ldm_cin UNet.

The CompVis classes are those of the `ldm` package (UNetModel, Encoder, Decoder) with
gen_compvis_fixtures' 8-group norm patch; BERTEmbedder, SpatialRescaler and x_transformer are
vendored from CompVis/latent-diffusion under tools/reference/latent_diffusion.

Run: cd tools && /opt/torchref/bin/python gen_ldm_task_fixtures.py
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference", "latent_diffusion"))
import gen_compvis_fixtures as cv  # noqa: E402  (applies the 8-group norm patch)
import gen_layout_fixture as layout_ref  # noqa: E402  (imports the vendored taming builder)
from gen_fixtures import perturb  # noqa: E402
from ldm.models.diffusion.ddim import DDIMSampler  # noqa: E402
from ldm.modules.diffusionmodules.model import Decoder, Encoder  # noqa: E402
from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402
from ldm.modules.diffusionmodules.util import make_beta_schedule  # noqa: E402
from encoders import BERTEmbedder, SpatialRescaler  # noqa: E402  (vendored CompVis)

FIX = os.path.join(HERE, "..", "tests", "fixtures")
OUT = os.path.join(FIX, "pipelines")
STEPS = 5


def ldm_scheduler(linear_end):
    return dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=linear_end, beta_schedule="scaled_linear",
                timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)


def ddim(model_fn, noise, linear_end, steps=STEPS):
    s = DDIMScheduler(**ldm_scheduler(linear_end))
    s.set_timesteps(steps)
    x = noise
    for t in s.timesteps:
        x = s.step(model_fn(x, t), t, x).prev_sample
    return x


def fixture_weights(name, prefix=""):
    return {k[len("weights." + prefix):]: v for k, v in load_file(os.path.join(FIX, f"{name}.safetensors")).items()
            if k.startswith("weights." + prefix) and not k.startswith("weights.cond.")}


def compvis_unet(name):
    kw = next(k for n, k, *_ in cv.UNETS if n == name)
    m = UNetModel(image_size=8, **kw)
    m.load_state_dict(fixture_weights(name), strict=True)
    return m.eval()


class VQ:
    """The vq_noattn fixture as CompVis' VQModelInterface uses it: encode = quant_conv(encoder(x))
    (no quantisation), decode = quantize → post_quant_conv → decoder."""

    def __init__(self):
        dd = dict(double_z=False, z_channels=3, resolution=16, in_channels=3, out_ch=3, ch=16, ch_mult=(1, 1),
                  num_res_blocks=1, attn_resolutions=[], dropout=0.0, attn_type="none")
        self.enc, self.dec = Encoder(**dd).eval(), Decoder(**dd).eval()
        self.enc.load_state_dict(fixture_weights("vq_noattn", "encoder."))
        self.dec.load_state_dict(fixture_weights("vq_noattn", "decoder."))
        w = fixture_weights("vq_noattn")
        self.book = w["quantize.embedding.weight"]
        self.q, self.pq = (w["quant_conv.weight"], w["quant_conv.bias"]), (w["post_quant_conv.weight"], w["post_quant_conv.bias"])

    def encode(self, x):
        return F.conv2d(self.enc(x), *self.q)

    def decode(self, h):
        n, c, hh, ww = h.shape
        z = h.permute(0, 2, 3, 1).reshape(-1, c)
        idx = (z.pow(2).sum(1, keepdim=True) + self.book.pow(2).sum(1) - 2 * z @ self.book.t()).argmin(1)
        zq = self.book[idx].view(n, hh, ww, c).permute(0, 3, 1, 2)
        return self.dec(F.conv2d(zq, *self.pq))


class CompVisLDM:
    """What ldm's DDIMSampler reads from a LatentDiffusion: the schedule buffers (ddpm.py
    register_schedule: make_beta_schedule("linear"), cumprod in float64, stored as float32) and
    apply_model with DiffusionWrapper's concat branch (cat([x] + c_concat, 1)). The real class
    needs pytorch_lightning, which the reference environment does not have."""

    def __init__(self, unet, linear_end):
        betas = make_beta_schedule("linear", 1000, linear_start=0.0015, linear_end=linear_end)
        ac = np.cumprod(1.0 - betas, axis=0)
        f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.betas, self.alphas_cumprod, self.alphas_cumprod_prev = f32(betas), f32(ac), f32(np.append(1.0, ac[:-1]))
        self.num_timesteps, self.device, self.parameterization, self.unet = 1000, "cpu", "eps", unet

    def apply_model(self, x, t, c):
        return self.unet(torch.cat([x] + [c], dim=1), t)


def save(name, tensors, meta):
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path, metadata={k: str(v) for k, v in meta.items()})
    print(f"{name}: {os.path.getsize(path)} bytes")


def check(what, ours, ref, tol=1e-5):
    err = (ours - ref).abs().max().item() / ref.abs().max().item()
    print(f"  {what}: max|err|/max|ref| = {err:.1e}")
    assert err < tol, what


def inpaint():
    end = 0.0205  # inpainting_big
    unet, vq = compvis_unet("unet_ldm_concat"), VQ()
    g = torch.Generator().manual_seed(41)
    image = torch.rand(2, 3, 20, 20, generator=g)
    # a soft-edged mask with exact 0.5s (→ 1) and values just below (→ 0) on the nearest-sampled pixels
    mask = torch.full((2, 1, 20, 20), 0.1)
    mask[0, :, 4:14, 6:18] = 0.8
    mask[1, :, 10:20, 0:9] = 0.93
    mask[:, :, 2, ::2] = 0.5
    mask[:, :, 16, ::2] = 0.4999
    mask += 0.05 * torch.rand(mask.shape, generator=g) * (mask != 0.5) * (mask != 0.4999)
    # make_batch
    m = mask.clone()
    m[m < 0.5] = 0
    m[m >= 0.5] = 1
    masked = (1 - m) * image
    batch = {k: v * 2.0 - 1.0 for k, v in dict(image=image, mask=m, masked_image=masked).items()}
    with torch.no_grad():
        c = vq.encode(batch["masked_image"])
        cc = F.interpolate(batch["mask"], size=c.shape[-2:])
        c = torch.cat((c, cc), dim=1)
        shape = (c.shape[1] - 1,) + c.shape[2:]
        noise = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(42))
        lat = ddim(lambda x, t: unet(torch.cat([x, c], 1), t.expand(x.shape[0]).float()), noise, end)
        ref, _ = DDIMSampler(CompVisLDM(unet, end)).sample(S=STEPS, conditioning=c, batch_size=2, shape=shape,
                                                            verbose=False, x_T=noise, eta=0.0)
        check("CompVis DDIMSampler vs diffusers DDIMScheduler", ref, lat)
        x = vq.decode(lat)
        img01 = torch.clamp((batch["image"] + 1.0) / 2.0, min=0.0, max=1.0)
        mask01 = torch.clamp((batch["mask"] + 1.0) / 2.0, min=0.0, max=1.0)
        predicted = torch.clamp((x + 1.0) / 2.0, min=0.0, max=1.0)
        inpainted = (1 - mask01) * img01 + mask01 * predicted
    save("ldm_inpaint", dict(image=image, mask=mask, cond=c, noise=noise, latents=lat, decoded=x, inpainted=inpainted),
         dict(steps=STEPS, linear_end=end))


def unet2d_to_compvis(sd, levels, nrb, head_dim):
    """diffusers UNet2DModel (DownBlock2D/AttnDownBlock2D, UNetMidBlock2D, conv up/downsamplers)
    state dict → CompVis UNetModel keys; the inverse of diffusers'
    scripts/convert_ldm_original_checkpoint_to_diffusers.py, legacy attention included."""
    out = {}

    def res(dst, src):
        for a, b in [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                     ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]:
            for p in ("weight", "bias"):
                if f"{src}.{a}.{p}" in sd:
                    out[f"{dst}.{b}.{p}"] = sd[f"{src}.{a}.{p}"]

    def attn(dst, src):
        out[f"{dst}.norm.weight"], out[f"{dst}.norm.bias"] = sd[f"{src}.group_norm.weight"], sd[f"{src}.group_norm.bias"]
        c = sd[f"{src}.to_q.weight"].shape[0]
        heads = c // head_dim
        # QKVAttentionLegacy splits qkv per head into [q_h; k_h; v_h]
        for p in ("weight", "bias"):
            q, k, v = (sd[f"{src}.to_{n}.{p}"].reshape(heads, head_dim, -1) for n in "qkv")
            out[f"{dst}.qkv.{p}"] = torch.cat([q, k, v], 1).reshape(3 * c, -1).squeeze(-1)
        out[f"{dst}.qkv.weight"] = out[f"{dst}.qkv.weight"][..., None]
        out[f"{dst}.proj_out.weight"] = sd[f"{src}.to_out.0.weight"][..., None]
        out[f"{dst}.proj_out.bias"] = sd[f"{src}.to_out.0.bias"]

    def copy(dst, src):
        for p in ("weight", "bias"):
            out[f"{dst}.{p}"] = sd[f"{src}.{p}"]

    copy("time_embed.0", "time_embedding.linear_1")
    copy("time_embed.2", "time_embedding.linear_2")
    copy("input_blocks.0.0", "conv_in")
    for i in range(levels):
        for j in range(nrb):
            k = 1 + i * (nrb + 1) + j
            res(f"input_blocks.{k}.0", f"down_blocks.{i}.resnets.{j}")
            if f"down_blocks.{i}.attentions.{j}.to_q.weight" in sd:
                attn(f"input_blocks.{k}.1", f"down_blocks.{i}.attentions.{j}")
        if i < levels - 1:
            copy(f"input_blocks.{(i + 1) * (nrb + 1)}.0.op", f"down_blocks.{i}.downsamplers.0.conv")
    res("middle_block.0", "mid_block.resnets.0")
    attn("middle_block.1", "mid_block.attentions.0")
    res("middle_block.2", "mid_block.resnets.1")
    for i in range(levels):
        for j in range(nrb + 1):
            k = i * (nrb + 1) + j
            res(f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}")
            has_attn = f"up_blocks.{i}.attentions.{j}.to_q.weight" in sd
            if has_attn:
                attn(f"output_blocks.{k}.1", f"up_blocks.{i}.attentions.{j}")
            if j == nrb and i < levels - 1:
                copy(f"output_blocks.{k}.{2 if has_attn else 1}.conv", f"up_blocks.{i}.upsamplers.0.conv")
    copy("out.0", "conv_norm_out")
    copy("out.2", "conv_out")
    n_attn = sum(k.endswith("to_q.weight") for k in sd)
    assert len(out) == len(sd) - 4 * n_attn, "every diffusers weight has a CompVis place (q, k, v fuse into qkv)"
    return out


# the SR UNet as CompVis UNetModel kwargs (bsr_sr's shape, small): 6 → 3 channels, attention at ds 2
SR_UNET = dict(in_channels=6, out_channels=3, model_channels=8, num_res_blocks=1, attention_resolutions=[2],
               channel_mult=[1, 2], num_head_channels=8)


def sr_unet_compvis(weights):
    m = UNetModel(image_size=8, **SR_UNET)
    m.load_state_dict(weights, strict=True)
    return m.eval()


def superres():
    end = 0.0155  # bsr_sr
    torch.manual_seed(50)
    unet = perturb(UNet2DModel(sample_size=8, in_channels=6, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                               down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                               attention_head_dim=8, norm_num_groups=8), 51).eval()
    vqvae = perturb(VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                            latent_channels=3, num_vq_embeddings=16, norm_num_groups=8, sample_size=16), 52).eval()
    sched = DDIMScheduler(**ldm_scheduler(end))
    pipe = LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    low01 = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(53))
    captured = {}
    real_decode = vqvae.decode

    def decode(z, *a, **k):
        captured["latents"] = z.clone()
        return real_decode(z, *a, **k)

    vqvae.decode = decode
    with torch.no_grad():
        image01 = pipe(low01 * 2 - 1, num_inference_steps=STEPS, eta=0.0, generator=torch.Generator().manual_seed(54), output_type="pt").images
        noise = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(54))  # randn_tensor's draw
        decoded = real_decode(captured["latents"]).sample
        low = low01 * 2 - 1
        mine = ddim(lambda x, t: unet(torch.cat([x, low], 1), t).sample, noise, end)
        check("the pipeline's latents vs its loop rerun from the recorded noise", mine, captured["latents"], 1e-6)
        # the same UNet under CompVis names, through CompVis UNetModel
        cw = unet2d_to_compvis(unet.state_dict(), 2, 1, 8)
        x, t = torch.randn(2, 6, 8, 12), torch.tensor([3.0, 917.0])
        check("CompVis UNetModel with converted weights vs UNet2DModel", sr_unet_compvis(cw)(x, t), unet(x, t).sample)
    tensors = dict(low_res=low01, noise=noise, latents=captured["latents"], decoded=decoded, image01=image01)
    tensors.update({f"weights.unet.{k}": v for k, v in cw.items()})
    tensors.update({f"weights.vqvae.{k}": v for k, v in vqvae.state_dict().items()})
    save("ldm_superres", tensors, dict(steps=STEPS, linear_end=end, unet_kwargs=json.dumps(SR_UNET),
                                       vqvae_config=json.dumps({k: v for k, v in vqvae.config.items() if not k.startswith("_")})))
    return cw


def semantic(sr_weights):
    end = 0.0205  # semantic_synthesis256
    unet = sr_unet_compvis(sr_weights)
    rw = load_file(os.path.join(FIX, "spatial_rescaler.safetensors"))["weights.channel_mapper.weight"]
    n_classes = rw.shape[1]
    rescaler = SpatialRescaler(n_stages=2, method="bilinear", multiplier=0.5, in_channels=n_classes, out_channels=3, bias=False)
    rescaler.channel_mapper.weight.data.copy_(rw)
    tensors = {}
    g = torch.Generator().manual_seed(60)
    for case, (n, h, w) in [("", (2, 8, 8)), ("large_", (1, 12, 20))]:
        labels = torch.randint(0, n_classes, (n, 4 * h, 4 * w), generator=g)  # the rescaler's 2 stages: ×4
        onehot = np.eye(n_classes)[labels.numpy()]  # taming sflckr.py: [n, H, W, classes], float64
        seg = torch.from_numpy(onehot).permute(0, 3, 1, 2).float()  # get_input: b h w c -> b c h w, .float()
        with torch.no_grad():
            c = rescaler.encode(seg)
            noise = torch.randn(n, 3, h, w, generator=g)
            lat = ddim(lambda x, t: unet(torch.cat([x, c], 1), t.expand(x.shape[0]).float()), noise, end)
        tensors.update({f"{case}labels": labels, f"{case}cond": c, f"{case}noise": noise, f"{case}latents": lat})
    save("ldm_semantic", tensors, dict(steps=STEPS, linear_end=end, n_classes=n_classes, training_latent_size=8))


def layout():
    end = 0.0205  # layout2img-openimages256
    unet = compvis_unet("unet_ldm_cin")
    cfg = dict(no_object_classes=5, no_max_objects=3, no_tokens=64, encode_crop=True,
               use_group_parameter=False, use_additional_parameters=False)
    layout_ref.CONFIGS["ldm_task"] = cfg
    obj = layout_ref.obj
    layouts = [[obj(1, [0.1, 0.2, 0.6, 0.9]), obj(3, [0.5, 0.05, 0.95, 0.4]), obj(4, [0.0, 0.6, 0.3, 1.0])],
               [obj(0, [0.25, 0.25, 0.75, 0.75])]]
    cases = [layout_ref.build_case(f"l{i}", "ldm_task", objs, 70 + i) for i, objs in enumerate(layouts)]
    ids = torch.tensor([c["ids"] for c in cases])
    seq = ids.shape[1]
    torch.manual_seed(71)
    bert = perturb(BERTEmbedder(n_embed=24, n_layer=1, vocab_size=cfg["no_tokens"], max_seq_len=seq, use_tokenizer=False), 72).eval()
    with torch.no_grad():
        ctx = bert.encode(ids)
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(73))
        # the UNet's SD2-style SpatialTransformer takes one context per depth, as a list
        lat = ddim(lambda x, t: unet(x, t.expand(x.shape[0]).float(), context=[ctx] * 2), noise, end)
    tensors = dict(ids=ids, context=ctx, noise=noise, latents=lat)
    tensors.update({f"weights.bert.{k[len('transformer.'):]}": v for k, v in bert.state_dict().items()})
    # objects in the order the builder used them (it shuffles); boxes as Python reprs
    objects = [[dict(class_id=o["class_id"], box=o["box"]) for o in c["objects"]] for c in cases]
    save("ldm_layout", tensors, dict(steps=STEPS, linear_end=end, layout_config=json.dumps(cfg), objects=json.dumps(objects),
                                     n_embed=24, n_layer=1, heads=8, dim_head=64))


TEXT_WORDS = ["a", "painting", "of", "squirrel", "##s", "eating", "burger", "red", "cat", "!", "the", "on", "mat", "."]


def text2img():
    """LDMTextToImagePipeline (txt2img_1p4b's schedule) with random LDMBert weights, a WordPiece
    vocabulary of a few words, and the UNet and KL autoencoder of tests/fixtures/tiny_sd."""
    import tempfile
    from diffusers import AutoencoderKL, LDMTextToImagePipeline, UNet2DConditionModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel
    from transformers import BertTokenizer

    tiny = os.path.join(FIX, "tiny_sd")
    unet = UNet2DConditionModel.from_pretrained(tiny, subfolder="unet", variant="fp16", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(tiny, subfolder="vae", variant="fp16", torch_dtype=torch.float32).eval()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TEXT_WORDS
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "vocab.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")
        # transformers 5: only from_pretrained(folder) reads a vocab.txt (see gen_bert_tokenizer_fixture.py)
        tok = BertTokenizer.from_pretrained(d)
    assert len(tok) == len(vocab), len(tok)
    cfg = LDMBertConfig(vocab_size=len(vocab), max_position_embeddings=77, encoder_layers=1, encoder_ffn_dim=64,
                        encoder_attention_heads=2, head_dim=16, d_model=unet.config.cross_attention_dim)
    torch.manual_seed(80)
    bert = perturb(LDMBertModel(cfg), 81).eval()
    sched_cfg = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                     timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    pipe = LDMTextToImagePipeline(vqvae=vae, bert=bert, tokenizer=tok, unet=unet, scheduler=DDIMScheduler(**sched_cfg))
    pipe.set_progress_bar_config(disable=True)
    prompts = ["A painting of squirrels eating a burger!", "the red cat on a mat, unknown words."]
    scale = 3.0
    captured = {}
    real_decode = vae.decode

    def decode(z, *a, **k):
        captured["scaled"] = z.clone()
        return real_decode(z, *a, **k)

    vae.decode = decode
    # the pipeline's latents are (N, in_channels, height // 8, width // 8) whatever the VAE's factor
    noise = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(82))
    with torch.no_grad():
        image01 = pipe(prompts, height=64, width=96, num_inference_steps=STEPS, guidance_scale=scale, eta=0.0,
                       latents=noise, output_type="pt").images
        ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        context = bert(ids)[0]
        decoded = real_decode(captured["scaled"]).sample
    tensors = dict(ids=ids, context=context, noise=noise, latents=captured["scaled"] * vae.config.scaling_factor,
                   decoded=decoded, image01=image01)
    tensors.update({f"weights.bert.{k}": v for k, v in bert.state_dict().items()})
    save("ldm_text2img", tensors, dict(steps=STEPS, guidance=scale, prompts=json.dumps(prompts), vocab="\n".join(vocab) + "\n",
                                       bert_config=bert.config.to_json_string(), scheduler_json=json.dumps(sched_cfg)))


def main():
    os.makedirs(OUT, exist_ok=True)
    warnings.simplefilter("ignore")
    inpaint()
    semantic(superres())
    layout()
    text2img()


if __name__ == "__main__":
    main()
