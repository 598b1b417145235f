"""A Stable Diffusion v1.5-sized diffusers folder with random weights (the real configs, the real
CLIP tokenizer files from weights/clip_tokenizer, SD1.5's PNDM scheduler config), for timing the
whole pipeline without downloadable weights. f16 files (1.7 GB), like the usual fp16 variant.

Usage: python tools/make_sd15_random_folder.py OUT_DIR
"""
import json
import os
import shutil
import sys

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def main(out):
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD1.5's config
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))
    for name, m in [("unet", unet), ("vae", vae), ("text_encoder", clip)]:
        m.half().save_pretrained(os.path.join(out, name), safe_serialization=True)
    tok = os.path.join(out, "tokenizer")
    os.makedirs(tok, exist_ok=True)
    src = os.path.join(os.path.dirname(__file__), "..", "weights", "clip_tokenizer")
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(src, f), tok)
    json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
               "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
              open(os.path.join(tok, "tokenizer_config.json"), "w"))
    PNDMScheduler.from_config(dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                   set_alpha_to_one=False, skip_prk_steps=True, clip_sample=False)).save_pretrained(os.path.join(out, "scheduler"))
    json.dump({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
               "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False},
              open(os.path.join(out, "model_index.json"), "w"), indent=2)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
