"""Launch counts per kernel of a GPU run (`LDM_CUDA_PROFILE=1` table) against the same command's
CUDA dry run (`LDM_CUDA_DRY_RUN=1` report): how faithfully the dry run (src/backend/cuda/dry_run.rs)
predicts what the GPU launches. Prints a Markdown summary (and every kernel whose counts differ).

Usage: python3 tools/dry_run_vs_profile.py PROFILE_LOG DRY_RUN_LOG
"""
import re
import sys


def launches(path):
    """{kernel: launches} from the first `| kernel | launches | ...` table in a log."""
    counts = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\| (\S+) \| (\d+) \|", line)
        if m and m.group(1) not in counts:
            counts[m.group(1)] = int(m.group(2))
    return counts


def main(profile_log, dry_log):
    gpu, dry = launches(profile_log), launches(dry_log)
    if not gpu or not dry:
        print(f"dry run vs GPU profile: no table in {'the profile' if not gpu else 'the dry run'} log")
        return 1
    kernels = sorted(set(gpu) | set(dry), key=lambda k: -gpu.get(k, 0))
    differ = [k for k in kernels if gpu.get(k) != dry.get(k)]
    print(f"dry run vs GPU profile: {len(kernels) - len(differ)} of {len(kernels)} kernels launched the same number of times "
          f"({sum(gpu.values())} launches on the GPU, {sum(dry.values())} in the dry run)")
    if differ:
        print("| kernel | GPU | dry run |\n|---|---:|---:|")
        for k in differ:
            print(f"| {k} | {gpu.get(k, 0)} | {dry.get(k, 0)} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
