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


def build(results: pathlib.Path) -> str:
    parts = []
    run, e2e, paper = (newest(results, k) for k in ("run", "e2e", "paper"))
    if not (run or e2e or paper):
        return NONE_YET
    for path, title, sections in (
        (e2e, "Stable Diffusion 1.5-size text-to-image, 512², 50 DDIM steps + CFG, vs PyTorch", None),
        (run, "Tensor-core kernels vs PyTorch (cuDNN conv, SDPA)", ["tensor-core kernels vs PyTorch"]),
        (run, "Memory-bound kernels vs the device's copy bandwidth", ["bench-cuda_bandwidth"]),
        (paper, "The paper's Tab. 18 configs, samples/s", None),
    ):
        if path is None:
            continue
        text = path.read_text()
        body = [s for s in (section(text, t) for t in sections)] if sections else [text.split("\n", 1)[1].strip() if "\n" in text else ""]
        body = [b for b in body if b]
        if not body:
            continue
        parts.append(f"**{title}** — from `{path.as_posix()}`\n")
        parts.extend(header_lines(text))
        parts.append("")
        parts.extend(body)
        parts.append("")
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
