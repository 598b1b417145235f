#!/usr/bin/env bash
# Prepares a GPU check: builds here (no GPU needed) the CUDA test and bench binaries in release,
# with the pinned CUDA 13.0 nvcc so the PTX is embedded, strips them, and packs them with a runner
# into gpu-bundle/ (gitignored, well under the device tool's 64 MiB carry limit).
#
# Then run it on the GPU machine in one call (library tool `run`, from the repository root):
#     run(command="bash gpu-bundle/run.sh", carry=["gpu-bundle"])
# gpu-bundle/run.sh runs every test binary, `ldm-engine sample` on cuda and cpu (digits_*.png) and
# every bench, writes each log plus summary.md (date,
# device, driver, commit, one row per binary) into $OUT, and exits non-zero if a test failed.
# Copy what comes back into benches/results/ with the command that produced it.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=$(tools/install_cuda_toolchain.sh)
export NVCC
bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/bin"

# Every executable cargo builds for these targets (JSON lines → paths).
executables() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])'
}

# (cargo also reports the main binary it builds on the way: keep only the named targets.)
cargo test --release --locked --no-run --message-format=json --lib --test device_ops --test device_models | executables | grep -E ' (ldm_engine|device_ops|device_models) ' > "$bundle/tests.txt"
cargo bench --locked --no-run --message-format=json --bench cuda_bandwidth | executables | grep ' cuda_bandwidth ' > "$bundle/benches.txt"
cargo build --release --locked
cp target/release/ldm-engine "$bundle/bin/ldm-engine"
while read -r kind name exe; do
    cp "$exe" "$bundle/bin/test-$name"
done < "$bundle/tests.txt"
while read -r kind name exe; do
    cp "$exe" "$bundle/bin/bench-$name"
done < "$bundle/benches.txt"
strip "$bundle"/bin/* 2>/dev/null || true
rm "$bundle/tests.txt" "$bundle/benches.txt"
git rev-parse HEAD > "$bundle/COMMIT"
git status --porcelain | grep -q . && echo "(with uncommitted changes)" >> "$bundle/COMMIT"

cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: every CUDA test binary, then the benches.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# the tests read fixtures relative to the repository root, the bundle's parent
cd "$here/.."
out=${OUT:-$here/results}
mkdir -p "$out"
summary="$out/summary.md"
{
    echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- commit: $(tr '\n' ' ' < "$here/COMMIT")"
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
    echo "- command: bash gpu-bundle/run.sh (built by tools/gpu_check.sh)"
    echo
    echo "| binary | exit | result |"
    echo "|---|---:|---|"
} > "$summary"
failed=0
for exe in "$here"/bin/test-*; do
    name=$(basename "$exe")
    # The library's unit tests: only the CUDA ones (the rest need the source tree's fixtures).
    filter=""
    [ "$name" = "test-ldm_engine" ] && filter="backend::cuda"
    "$exe" $filter --test-threads=1 > "$out/$name.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && failed=1
    echo "| $name | $rc | $(grep -E '^test result' "$out/$name.log" | tail -1) |" >> "$summary"
done
# The main job end to end on the GPU and, for comparison, on the CPU of the same machine.
for dev in cuda cpu; do
    "$here/bin/ldm-engine" sample --device $dev --timings --out "$out/digits_$dev.png" > "$out/sample-$dev.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $dev = cuda ] && failed=1
    echo "| ldm-engine sample --device $dev | $rc | $(grep -E '^timings' "$out/sample-$dev.log" | tail -1) |" >> "$summary"
done
for exe in "$here"/bin/bench-*; do
    name=$(basename "$exe")
    "$exe" > "$out/$name.log" 2>&1
    rc=$?
    echo "| $name | $rc | see $name.log |" >> "$summary"
    { echo; echo "## $name"; echo; grep -E '^(\||device:|allocator:)' "$out/$name.log"; } >> "$summary"
done
cat "$summary"
exit $failed
RUN
chmod +x "$bundle/run.sh"
du -sh "$bundle"
ls -la "$bundle/bin"
echo "ready: run(command=\"bash $bundle/run.sh\", carry=[\"$bundle\"])"
