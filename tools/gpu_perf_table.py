"""Rewrites the README's GPU performance section from the GPU logs committed under benches/results/.

A GPU session copies what the three device calls return (tools/gpu_check.sh) as
    benches/results/gpu-<YYYY-MM-DD>-run.md     (run.sh's summary.md: tests, benches, the
                                                 tensor-core ratio table vs PyTorch)
    benches/results/gpu-<YYYY-MM-DD>-e2e.md     (e2e.sh: SD1.5-size text-to-image vs PyTorch)
    benches/results/gpu-<YYYY-MM-DD>-paper.md   (paper.sh: the paper's Tab. 18 configs)
and runs `python3 tools/gpu_perf_table.py`. The newest log of each kind is quoted, section by
section, between the README's `<!-- gpu-perf:begin -->` and `<!-- gpu-perf:end -->` markers, with
the file it came from: the README never carries a GPU number that is not in a committed log.
Standard library only.
"""
import argparse
import pathlib
import re
import sys

BEGIN, END = "<!-- gpu-perf:begin -->", "<!-- gpu-perf:end -->"
NONE_YET = (
    "No GPU run has been recorded yet: no GPU has been lent to this work so far. `tools/gpu_check.sh`\n"
    "prepares one; this section is rewritten from its logs by `python3 tools/gpu_perf_table.py`.\n"
)


def newest(results: pathlib.Path, kind: str):
    logs = sorted(results.glob(f"gpu-*-{kind}.md"), key=lambda p: re.findall(r"\d{4}-\d{2}-\d{2}", p.name) + [p.name])
    return logs[-1] if logs else None


def section(text: str, title: str):
    """The body of the `## title` section (up to the next `## ` heading), or None."""
    m = re.search(rf"^## {re.escape(title)}\s*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return m.group(1).strip() if m else None


def header_lines(text: str):
    """The `- key: value` lines at the top of a summary (date, commit, device, command)."""
    return [line for line in text.splitlines()[:12] if line.startswith("- ")]


def timings(line: str) -> dict:
    """`timings: key=value ...` (the engine's and the torch script's shared format) as a dict."""
    return dict(kv.split("=") for kv in line.split()[1:])


# The engine's e2e runs by the start of their summary line, most specific first.
ENGINE_RUNS = [
    ("engine (50 steps, timed", "ldm-engine"),
    ("engine (50 steps, LDM_CUDA_GRAPH=1)", "ldm-engine, CUDA graph"),
    ("engine (50 steps, LDM_CUDA_CONV=tile64", "ldm-engine, conv on the 64×64 tile only"),
    ("engine (50 steps, LDM_CUDA_ATTENTION=lab-v3 LDM_CUDA_GEMM=lab-v4", "ldm-engine, kernel-lab attention v3 + GEMM v4 + conv v4"),
    ("engine (50 steps, LDM_CUDA_GEMM=lab-v5", "ldm-engine, GEMM and conv on kernel-lab variants 5 (wgmma)"),
    ("engine (50 steps, LDM_CUDA_ATTENTION=lab-v3", "ldm-engine, attention on kernel-lab variant 3"),
]


def e2e_table(text: str):
    """The e2e log's timings as one table: per dtype, PyTorch's and the engine's runs."""
    rows, dtype, label = [], None, None
    torch_step = {}
    for line in text.splitlines():
        if line.startswith("## "):
            dtype = line[3:].strip()
        elif line.startswith("torch ("):
            label = "PyTorch"
        elif line.startswith("engine (") and any(line.startswith(p) for p, _ in ENGINE_RUNS):
            label = next(name for p, name in ENGINE_RUNS if line.startswith(p))
        elif line.startswith("engine ("):
            label = None
        elif line.startswith("timings:") and label and dtype:
            t = timings(line)
            if label == "PyTorch":
                torch_step[dtype] = float(t["unet_ms_per_step"])
            ratio = float(t["unet_ms_per_step"]) / torch_step[dtype] if dtype in torch_step else float("nan")
            # before `sample --repeat` (and load_ms) the engine's total counted loading the model
            total = t["total_ms"] + (" †" if label != "PyTorch" and "load_ms" not in t else "")
            rows.append([dtype, label, t["unet_ms_per_step"], t["vae_decode_ms"], total, f"{ratio:.2f}"])
        elif line.startswith("latents:") and rows and label:
            rows[-1].append(line.split(",")[0].replace("latents: ", ""))
    if not rows:
        return None
    out = ["| dtype | run | UNet ms/step | VAE decode ms | total ms | UNet step vs PyTorch | latents vs PyTorch |", "|---|---|---:|---:|---:|---:|---|"]
    out += ["| " + " | ".join(r + [""] * (7 - len(r))) + " |" for r in rows]
    if any("†" in r[4] for r in rows):
        out.append("")
        out.append("† one cold process, loading the model included; later logs time text encoding + sampling + decoding, median of the warm runs of `sample --repeat 4`, as the PyTorch side does")
    return "\n".join(out)


def pytorch_spread(results: pathlib.Path) -> str:
    """How much PyTorch's own UNet step varied over every committed e2e log: a ratio from one
    run means little when the reference moves that much between runs."""
    steps = {}
    for path in sorted(results.glob("gpu-*-e2e.md")):
        dtype, is_torch = None, False
        for line in path.read_text().splitlines():
            if line.startswith("## "):
                dtype = line[3:].strip()
            is_torch = line.startswith("torch (") or (is_torch and not line.startswith("engine"))
            if is_torch and line.startswith("timings:") and dtype:
                t = timings(line)
                steps.setdefault(dtype, []).append(float(t["unet_ms_per_step"]))
    if not steps or max(len(v) for v in steps.values()) < 2:
        return ""
    parts = [f"{d} {min(v):.1f}–{max(v):.1f} ms over {len(v)} runs" for d, v in steps.items()]
    return ("\n\nPyTorch's UNet step in the committed e2e logs (the same script, fresh machines): " + "; ".join(parts)
            + ". The ratios above are this run's alone: set the engine's step against PyTorch's fastest run too.")


def top_rows(table: str, keep, limit: int):
    """A Markdown table's header and its first `limit` body rows for which keep(row) holds."""
    lines = [l for l in table.splitlines() if l.startswith("|")]
    body = [l for l in lines[2:] if keep(l)]
    return "\n".join(lines[:2] + body[:limit])


def build(results: pathlib.Path) -> str:
    parts = []
    run, e2e, paper = (newest(results, k) for k in ("run", "e2e", "paper"))
    if not (run or e2e or paper):
        return NONE_YET

    shown = set()

    def add(path, title, body, note=""):
        if not body:
            return
        parts.append(f"**{title}** — from `{path.as_posix()}`{note}\n")
        if path not in shown:  # a file's date, commit and device once, at its first section
            parts.extend(header_lines(path.read_text()) + [""])
            shown.add(path)
        parts.extend([body, ""])

    if e2e:
        text = e2e.read_text()
        table = e2e_table(text)
        spread = pytorch_spread(results)
        add(e2e, "Stable Diffusion 1.5-size text-to-image, 512², 50 DDIM steps, CFG 7.5, vs PyTorch", table and table + spread)
        m = re.search(r"^kernel time by kernel.*?\n\n(\|.*?)(?=\n\n|\n```|\Z)", text, flags=re.S | re.M)
        if m:
            add(e2e, "Where the engine's GPU time goes (3 steps + VAE decode, f16, LDM_CUDA_PROFILE=1; top 10)", top_rows(m.group(1), lambda l: True, 10))
    if run:
        text = run.read_text()
        tests = top_rows(text.split("\n## ", 1)[0], lambda l: True, 50)
        add(run, "CUDA tests and the main job on the GPU", tests)
        ratios = section(text, "tensor-core kernels vs PyTorch")
        if ratios:
            add(run, "Tensor-core kernels vs PyTorch (cuDNN conv, SDPA), f16", top_rows(ratios, lambda l: "| f16 |" in l and " v2 |" not in l, 40), " (bf16 and the kernel lab's v2 rows there)")
        bandwidth = section(text, "bench-cuda_bandwidth")
        if bandwidth:
            add(run, "Memory-bound kernels vs the device's copy bandwidth, f32 and f16", top_rows(bandwidth, lambda l: " bf16 |" not in l, 40), " (bf16 rows there)")
    if paper:
        text = paper.read_text()
        add(paper, "The paper's Tab. 18 configs, samples/s", text.split("\n", 1)[1].strip() if "\n" in text else "")
    return "\n".join(parts).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--results", default="benches/results")
    args = ap.parse_args()
    readme = pathlib.Path(args.readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"error: {readme} has no {BEGIN} … {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{build(pathlib.Path(args.results))}{END}{tail}")
    print(f"{readme}: GPU performance section rewritten")


if __name__ == "__main__":
    main()
