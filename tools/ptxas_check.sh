#!/usr/bin/env bash
# Resource check of every CUDA kernel, no GPU needed: compiles kernels/*.cu to PTX exactly as
# build.rs does (compute_80), assembles it with ptxas for sm_80 (A100) and sm_90 (H100), and
# prints registers, stack frame and spills per kernel. Fails when any kernel spills registers, or
# has a local-memory stack frame and is not in STACK_ALLOWED below (with the reason).
# Usage: tools/ptxas_check.sh [REPORT.md]     (NVCC=/path/to/nvcc, default: nvcc on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-nvcc}
ptxas="$(dirname "$(command -v "$nvcc")")/ptxas"
report=${1:-/dev/null}
# sin/cos reduce huge arguments (|x| > 1e5) with Payne-Hanek, which keeps a small array on the
# stack; that path is cold and isolated in the unary_trig kernels.
STACK_ALLOWED='^unary_trig_'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows="$tmp/rows"
: > "$rows"
# The kernel lab's variants (tools/kernel_lab/) are checked too: a variant that spills is no candidate.
# Files named *_sm90a.cu use Hopper-only instructions (wgmma): PTX for compute_90a, assembled for
# sm_90a alone (build.rs compiles them the same way).
for cu in kernels/*.cu tools/kernel_lab/*.cu; do
    stem=$(basename "$cu" .cu)
    case "$stem" in
        *_sm90a) virt=compute_90a; archs="sm_90a" ;;
        *) virt=compute_80; archs="sm_80 sm_90" ;;
    esac
    "$nvcc" --ptx -O3 -arch=$virt -I kernels -o "$tmp/$stem.ptx" "$cu"
    for arch in $archs; do
        "$ptxas" -arch=$arch -v -o /dev/null "$tmp/$stem.ptx" 2>&1 | awk -v file="$stem" -v arch="$arch" '
            /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
            /bytes stack frame/ { stack = $1; spill_st = $5; spill_ld = $9 }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15);
                                      print file, fn, arch, regs, stack, spill_st, spill_ld }' >> "$rows"
    done
done

{
    echo "| file | kernel | arch | registers | stack bytes | spill stores | spill loads |"
    echo "|---|---|---|---:|---:|---:|---:|"
    awk '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$rows"
} > "$tmp/table"
cp "$tmp/table" "$report" 2>/dev/null || true

kernels=$(awk '$3 == "sm_80" || $3 == "sm_90a"' "$rows" | wc -l)
bad=$(awk -v allowed="$STACK_ALLOWED" '$6 > 0 || $7 > 0 || ($5 > 0 && $2 !~ allowed) { print $3, $2, "regs=" $4, "stack=" $5, "spills=" $6 "/" $7 }' "$rows")
maxregs=$(awk 'BEGIN { m = 0 } $4 > m { m = $4; k = $2 " (" $3 ")" } END { print m, k }' "$rows")
echo "ptxas: $kernels kernels in $(ls kernels/*.cu tools/kernel_lab/*.cu | wc -l) files, checked for sm_80 and sm_90 (sm_90a for *_sm90a.cu); most registers: $maxregs"
if [ -n "$bad" ]; then
    echo "ptxas check FAILED: register spills or an unexpected stack frame:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "ptxas check passed: no spills, no stack frames outside $STACK_ALLOWED"
