"""taming-transformers' EMA codebook (EMAVectorQuantizer + EmbeddingEMA, vendored verbatim in
tools/reference/taming_ema_quantize.py) for tests/train_vq_ema.rs: a codebook of 8 codes of
dimension 4, three training-mode forwards on seeded encoder outputs z [2, 4, 5, 3]. Writes
tests/fixtures/train/vq_ema.safetensors: the initial codebook, each step's z, code indices, loss,
and the codebook, cluster sizes and embedding averages after the step.

Upstream's EMAVectorQuantizer.__init__ reads `codebook_dim` and `num_tokens` from module globals
(a bug: its arguments are n_embed and embedding_dim); this script sets those globals to the
arguments, so the class runs unchanged.

Run: python tools/gen_vq_ema_fixture.py   (torch + einops: tools/setup_torch_ref.sh)
"""
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import taming_ema_quantize as q  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "train", "vq_ema.safetensors")
N_EMBED, DIM, BETA, DECAY = 8, 4, 0.25, 0.9


def main():
    torch.manual_seed(0)
    q.codebook_dim, q.num_tokens = DIM, N_EMBED
    vq = q.EMAVectorQuantizer(N_EMBED, DIM, BETA, decay=DECAY)
    vq.train()
    out = {"init.weight": vq.embedding.weight.detach().clone()}
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        # the encoder output drifts, so codes move and some go unused
        z = torch.randn(2, DIM, 5, 3, generator=g) * 0.5 + 0.3 * step
        z.requires_grad_(True)
        z_q, loss, (_, _, idx) = vq(z)
        loss.backward()
        out[f"step{step}.z"] = z.detach().clone()
        out[f"step{step}.indices"] = idx.detach().clone().to(torch.int64)
        out[f"step{step}.loss"] = loss.detach().reshape(1).clone()
        out[f"step{step}.z_grad"] = z.grad.detach().clone()
        out[f"step{step}.weight"] = vq.embedding.weight.detach().clone()
        out[f"step{step}.cluster_size"] = vq.embedding.cluster_size.detach().clone()
        out[f"step{step}.embed_avg"] = vq.embedding.embed_avg.detach().clone()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {"n_embed": str(N_EMBED), "dim": str(DIM), "beta": str(BETA), "decay": str(DECAY), "eps": "1e-5",
            "reference": "CompVis/taming-transformers@3ba01b2 EMAVectorQuantizer (tools/reference/taming_ema_quantize.py)"}
    save_file({k: v.contiguous() for k, v in out.items()}, OUT, metadata=meta)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
