#!/usr/bin/env bash
# Side-by-side CPU timings: `ldm-engine bench` and its torch twin (tools/torch_bench/ops.py) on the
# same shapes, interleaved (ours, torch, ours, torch) so both see the same machine state; the
# better of each pair of runs is kept. Writes benches/results/cpu-vs-torch-<date>.md and prints it.
#
#   tools/bench_vs_torch.sh [reps]      (PY=path/to/python with torch; default: tools/setup_torch_ref.sh's venv)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-7}
PY=${PY:-.venv-torch/bin/python}
[ -x "$PY" ] || { echo "no torch python at $PY: run tools/setup_torch_ref.sh or set PY" >&2; exit 1; }
cargo build --release --quiet
tmp=$(mktemp -d)
for i in 1 2; do
  ./target/release/ldm-engine bench --reps "$reps" > "$tmp/ours$i.txt"
  "$PY" tools/torch_bench/ops.py --reps "$reps" > "$tmp/torch$i.txt"
done
mkdir -p benches/results
out=benches/results/cpu-vs-torch-$(date -u +%Y-%m-%d).md
"$PY" - "$tmp" "$out" "$reps" <<'PY'
import os, platform, re, subprocess, sys
tmp, out, reps = sys.argv[1:]
def parse(path):
    rows = {}
    for line in open(path):
        m = re.match(r"^(.*?)\s+([\d.]+) ms\s+([\d.]+) (\S+)$", line.rstrip())
        if m:
            rows[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)), m.group(4))
    return rows
def best(a, b):
    return {k: min(a[k], b.get(k, a[k])) for k in a}
ours = best(parse(f"{tmp}/ours1.txt"), parse(f"{tmp}/ours2.txt"))
torch = best(parse(f"{tmp}/torch1.txt"), parse(f"{tmp}/torch2.txt"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
tv = open(f"{tmp}/torch1.txt").readline().strip()
lines = [f"# CPU: ldm-engine vs torch, {os.cpu_count()} cores ({cpu}), commit {commit}", "",
         f"Command: `tools/bench_vs_torch.sh {reps}` — median of {reps} runs per case, best of two interleaved passes; torch {tv}.", "",
         "| case | ldm-engine ms | torch ms | ratio (ours/torch) | ldm-engine rate |", "|---|---:|---:|---:|---:|"]
for k, (ms, rate, unit) in ours.items():
    t = torch.get(k)
    lines.append(f"| {k} | {ms:.2f} | {t[0]:.2f} | {ms / t[0]:.2f} | {rate:.3g} {unit} |" if t else f"| {k} | {ms:.2f} | – | – | {rate:.3g} {unit} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "wrote $out"
