"""Stable Diffusion v1 in plain torch.nn (no diffusers, no transformers): UNet2DConditionModel,
AutoencoderKL and CLIPTextModel with their diffusers / transformers parameter names, built from the
same config.json files, so one safetensors folder loads into these modules, into diffusers and into
ldm-engine. The GPU machines have PyTorch but no diffusers and no network: this is the PyTorch
side of the end-to-end comparison (tools/torch_sd15/bench.py). Attention is
F.scaled_dot_product_attention (flash / memory-efficient kernels on CUDA), convolutions are cuDNN.

Only what SD1.x uses is here: CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn /
UpBlock2D / CrossAttnUpBlock2D, `use_linear_projection` false or true, attention_head_dim as the
number of heads (the SD1.x convention), the KL VAE with one mid attention, CLIP with quick_gelu.
tools/torch_sd15/check_vs_diffusers.py checks every module against diffusers / transformers.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _list(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class ResnetBlock(nn.Module):
    """diffusers ResnetBlock2D (time embedding added after conv1, 'default' shift)."""

    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    """diffusers Attention: to_q/k/v, to_out.0; SDPA."""

    def __init__(self, dim, heads, context_dim=None, bias=False):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(self, x, context=None):
        ctx = x if context is None else context
        b, n, c = x.shape
        split = lambda t: t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)))
        return self.to_out[0](o.transpose(1, 2).reshape(b, n, c))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        # diffusers: net = [GEGLU, Dropout, Linear]
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2D(nn.Module):
    """diffusers Transformer2DModel (one block), conv or linear projections."""

    def __init__(self, dim, heads, context_dim, groups, linear):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, heads, context_dim)])
        self.proj_out = nn.Linear(dim, dim) if linear else nn.Conv2d(dim, dim, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        r = x
        x = self.norm(x)
        if self.linear:
            x = self.proj_in(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        else:
            x = self.proj_in(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        x = self.transformer_blocks[0](x, context)
        if self.linear:
            x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            x = self.proj_out(x.reshape(b, h, w, c).permute(0, 3, 1, 2))
        return x + r


class Downsample(nn.Module):
    def __init__(self, c, pad):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=pad)

    def forward(self, x):
        if self.pad == 0:  # the VAE encoder: pad right and bottom only
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """A down or up block: resnets, optional attentions, optional resampler."""

    def __init__(self, resnets, attentions, down=None, up=None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        else:
            self.attentions = None
        if down is not None:
            self.downsamplers = nn.ModuleList([down])
        if up is not None:
            self.upsamplers = nn.ModuleList([up])


def timestep_embedding(t, dim):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = list(cfg["block_out_channels"])
        n = len(ch)
        layers, groups, eps = cfg["layers_per_block"], cfg["norm_num_groups"], cfg.get("norm_eps", 1e-5)
        heads = _list(cfg["attention_head_dim"], n)
        ctx, linear = cfg["cross_attention_dim"], cfg.get("use_linear_projection", False)
        temb = ch[0] * 4
        self.ch0 = ch[0]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, t in enumerate(cfg["down_block_types"]):
            cin, out = out, ch[i]
            cross = t.startswith("CrossAttn")
            res = [ResnetBlock(cin if j == 0 else out, out, temb, groups, eps) for j in range(layers)]
            att = [Transformer2D(out, heads[i], ctx, groups, linear) for _ in range(layers)] if cross else None
            self.down_blocks.append(Block(res, att, down=Downsample(out, 1) if i < n - 1 else None))
        self.mid_block = Block([ResnetBlock(ch[-1], ch[-1], temb, groups, eps) for _ in range(2)], [Transformer2D(ch[-1], heads[-1], ctx, groups, linear)])
        self.up_blocks = nn.ModuleList()
        rch, rheads = ch[::-1], heads[::-1]
        prev = rch[0]
        for i, t in enumerate(cfg["up_block_types"]):
            out, cin = rch[i], rch[min(i + 1, n - 1)]
            cross = t.startswith("CrossAttn")
            res = []
            for j in range(layers + 1):
                skip = cin if j == layers else out
                res.append(ResnetBlock((prev if j == 0 else out) + skip, out, temb, groups, eps))
            att = [Transformer2D(out, rheads[i], ctx, groups, linear) for _ in range(layers + 1)] if cross else None
            self.up_blocks.append(Block(res, att, up=Upsample(out) if i < n - 1 else None))
            prev = out
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, t, context):
        emb = self.time_embedding(timestep_embedding(t, self.ch0).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for b in self.down_blocks:
            for j, r in enumerate(b.resnets):
                h = r(h, emb)
                if b.attentions is not None:
                    h = b.attentions[j](h, context)
                skips.append(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, emb)
        h = self.mid_block.attentions[0](h, context)
        h = self.mid_block.resnets[1](h, emb)
        for b in self.up_blocks:
            for j, r in enumerate(b.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), emb)
                if b.attentions is not None:
                    h = b.attentions[j](h, context)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VaeAttention(nn.Module):
    """The VAE's single-head mid-block attention (biases on q/k/v, its own group norm)."""

    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        o = F.scaled_dot_product_attention(self.to_q(y)[:, None], self.to_k(y)[:, None], self.to_v(y)[:, None])[:, 0]
        return x + self.to_out[0](o).transpose(1, 2).reshape(b, c, h, w)


class VaeMid(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c, c, 0, groups, 1e-6) for _ in range(2)])
        self.attentions = nn.ModuleList([VaeAttention(c, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, layers, g = list(cfg["block_out_channels"]), cfg["layers_per_block"], cfg["norm_num_groups"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, c in enumerate(ch):
            cin, out = out, c
            res = [ResnetBlock(cin if j == 0 else out, out, 0, g, 1e-6) for j in range(layers)]
            self.down_blocks.append(Block(res, None, down=Downsample(out, 0) if i < len(ch) - 1 else None))
        self.mid_block = VaeMid(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.down_blocks:
            for r in b.resnets:
                h = r(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(h))))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, layers, g = list(cfg["block_out_channels"]), cfg["layers_per_block"], cfg["norm_num_groups"]
        rch = ch[::-1]
        self.conv_in = nn.Conv2d(cfg["latent_channels"], rch[0], 3, padding=1)
        self.mid_block = VaeMid(rch[0], g)
        self.up_blocks = nn.ModuleList()
        prev = rch[0]
        for i, c in enumerate(rch):
            res = [ResnetBlock(prev if j == 0 else c, c, 0, g, 1e-6) for j in range(layers + 1)]
            self.up_blocks.append(Block(res, None, up=Upsample(c) if i < len(ch) - 1 else None))
            prev = c
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            for r in b.resnets:
                h = r(h)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lc = cfg["latent_channels"]
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode_mean(self, x):
        return self.quant_conv(self.encoder(x)).chunk(2, dim=1)[0]

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


class ClipLayer(nn.Module):
    def __init__(self, d, heads, inner):
        super().__init__()
        self.heads = heads
        self.layer_norm1 = nn.LayerNorm(d)
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, nn.Linear(d, d))
        self.layer_norm2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)

    def forward(self, x):
        b, n, d = x.shape
        a = self.self_attn
        y = self.layer_norm1(x)
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(split(a.q_proj(y)), split(a.k_proj(y)), split(a.v_proj(y)), is_causal=True)
        x = x + a.out_proj(o.transpose(1, 2).reshape(b, n, d))
        h = self.mlp.fc1(self.layer_norm2(x))
        return x + self.mlp.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class ClipTextModel(nn.Module):
    """transformers CLIPTextModel's parameters under `text_model.`; returns the last hidden state."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.text_model = nn.Module()
        tm = self.text_model
        tm.embeddings = nn.Module()
        tm.embeddings.token_embedding = nn.Embedding(cfg["vocab_size"], d)
        tm.embeddings.position_embedding = nn.Embedding(cfg["max_position_embeddings"], d)
        tm.encoder = nn.Module()
        tm.encoder.layers = nn.ModuleList([ClipLayer(d, cfg["num_attention_heads"], cfg["intermediate_size"]) for _ in range(cfg["num_hidden_layers"])])
        tm.final_layer_norm = nn.LayerNorm(d)

    def forward(self, ids):
        tm = self.text_model
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding.weight[: ids.shape[1]]
        for layer in tm.encoder.layers:
            x = layer(x)
        return tm.final_layer_norm(x)
