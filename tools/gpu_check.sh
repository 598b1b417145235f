#!/usr/bin/env bash
# Prepares a GPU check: builds here (no GPU needed) the CUDA test and bench binaries in release,
# with the pinned CUDA 13.0 nvcc so the PTX is embedded, strips them, and packs them with a runner
# into gpu-bundle/ (gitignored, well under the device tool's 64 MiB carry limit).
#
# Then run it on the GPU machine, two calls (library tool `run`, from the repository root; each
# stays under the 10-minute limit of one call):
#     run(command="bash gpu-bundle/run.sh", carry=["gpu-bundle"])
#     run(command="bash gpu-bundle/e2e.sh", carry=["gpu-bundle"])
#     run(command="bash gpu-bundle/paper.sh", carry=["gpu-bundle"])     (the paper's Tab. 18 configs)
# run.sh runs every test binary, `ldm-engine sample` on cuda and cpu (digits_*.png), every
# bench, and PyTorch on the tensor-core bench's shapes (tools/torch_bench/tensor_core.py);
# e2e.sh times Stable Diffusion 1.5-size text-to-image (512², 50 DDIM steps, CFG 7.5, f16 and
# bf16) with PyTorch (tools/torch_sd15/bench.py, plain torch: the GPU machine has no diffusers)
# and with the engine on the same random weights and initial noise (f16 also with the UNet step
# replayed from a CUDA graph, LDM_CUDA_GRAPH=1), and compares their latents; beside the f16
# profile it puts the CUDA dry run's prediction of the same work (launches per kernel, peak).
# Each writes summary.md (date, device, driver, commit, one row per step) and one .tgz of every log
# and picture into $OUT (the tool returns at most 8 files), and exits non-zero if a test failed.
# Copy what comes back into benches/results/ with the command that produced it: each summary.md as
# gpu-<date>-run.md, gpu-<date>-e2e.md, gpu-<date>-paper.md (and its .tgz beside it), then
# `python3 tools/gpu_perf_table.py` rewrites the README's GPU performance section from them.
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
cargo bench --locked --no-run --message-format=json --features kernel-lab --bench cuda_bandwidth --bench tensor_core --bench paper_configs | executables | grep -E ' (cuda_bandwidth|tensor_core|paper_configs) ' > "$bundle/benches.txt"
# the engine with the kernel lab built in: e2e.sh times the SD workload on lab variants through
# environment switches (LDM_CUDA_ATTENTION=lab-v3); without them it runs the shipped kernels
cargo build --release --locked --features kernel-lab
# Pre-flight, here, without a GPU: the SD1.5 workload e2e.sh times, as a CUDA dry run
# (LDM_CUDA_DRY_RUN: every launch checked against its kernel's PTX signature, nothing computed)
# under each switch e2e.sh uses. A host-side failure found here would have cost device minutes.
preflight() {
    LDM_CUDA_DRY_RUN=1 env "$@" target/release/ldm-engine sample --random-weights --preset sd_v1 --prompt "a photograph of an astronaut riding a horse" \
        --device cuda --dtype f16 --sampler ddim --steps 2 --repeat 2 --timings --out "$bundle/preflight.png" > "$bundle/preflight.log" 2>&1 \
        || { echo "dry-run pre-flight failed under: $*" >&2; tail -3 "$bundle/preflight.log" >&2; exit 1; }
    echo "pre-flight ($*): $(grep -E '^peak' "$bundle/preflight.log")"
}
for switches in LDM_CUDA_GRAPH=0 LDM_CUDA_GRAPH=1 LDM_CUDA_CONV=tile64 LDM_CUDA_ATTENTION=lab-v3 \
    "LDM_CUDA_ATTENTION=lab-v3 LDM_CUDA_GEMM=lab-v4 LDM_CUDA_CONV=lab-v4" "LDM_CUDA_GEMM=lab-v5 LDM_CUDA_CONV=lab-v5"; do
    # shellcheck disable=SC2086 # one word per switch
    preflight $switches
done
rm -f "$bundle/preflight.png" "$bundle/preflight.log"
cp target/release/ldm-engine "$bundle/bin/ldm-engine"
while read -r kind name exe; do
    cp "$exe" "$bundle/bin/test-$name"
done < "$bundle/tests.txt"
while read -r kind name exe; do
    cp "$exe" "$bundle/bin/bench-$name"
done < "$bundle/benches.txt"
strip "$bundle"/bin/* 2>/dev/null || true
# The device tool carries at most 64 MiB, the repository's tracked files included (~40 MB, a third
# of it the built-in model): the binaries travel xz -9e compressed (100 → 22 MB) and each script
# unpacks them on the GPU machine.
tar cf - -C "$bundle" bin | xz -9e -T2 > "$bundle/bin.tar.xz"
rm -rf "$bundle/bin"
rm "$bundle/tests.txt" "$bundle/benches.txt"
git rev-parse HEAD > "$bundle/COMMIT"
git status --porcelain | grep -q . && echo "(with uncommitted changes)" >> "$bundle/COMMIT"

cat > "$bundle/common.sh" <<'COMMON'
# Sourced by run.sh, e2e.sh and paper.sh on the GPU machine: $here is the bundle, the working
# directory its parent (the repository root: tests and tools read files relative to it), $dest
# where the results go back ($OUT), and the binaries unpacked.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."
# the binaries travel xz-compressed (the 64 MiB carry limit): unpack them once
[ -d "$here/bin" ] || tar xJf "$here/bin.tar.xz" -C "$here" 2>/dev/null \
    || ${PYTHON:-python3} -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$here/bin.tar.xz" "$here"
dest=${OUT:-$here/results}
mkdir -p "$dest"
COMMON

cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: every CUDA test binary, then the benches.
set -uo pipefail
source "$(dirname "$0")/common.sh"
out=$here/results/run
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
# The device tool stops a call at 10 minutes: what is done so far is saved after every step, so a
# cut-off run still brings back its summary and logs.
save() { cp "$summary" "$dest/summary.md"; tar czf "$dest/gpu-check-logs.tgz" -C "$out" .; }
# Every test in a process of its own: a kernel fault poisons the CUDA context for the rest of its
# process, and one broken kernel must not hide the results of every test after it.
for exe in "$here"/bin/test-*; do
    name=$(basename "$exe")
    # The library's unit tests: only the CUDA ones (the rest need the source tree's fixtures).
    filter=""
    [ "$name" = "test-ldm_engine" ] && filter="backend::cuda"
    passed=0; failures=""
    for t in $("$exe" $filter --list --format=terse 2>/dev/null | sed -n 's/: test$//p'); do
        { echo "=== $t"; timeout 150 "$exe" --exact "$t" --test-threads=1 --nocapture; echo "=== exit $?"; } >> "$out/$name.log" 2>&1
        if tail -1 "$out/$name.log" | grep -q '=== exit 0'; then passed=$((passed + 1)); else failures="$failures $t"; failed=1; fi
    done
    echo "| $name | $([ -z "$failures" ] && echo 0 || echo 1) | $passed passed; failed:${failures:- none} |" >> "$summary"
    save
done
# The main job end to end on the GPU and, for comparison, on the CPU of the same machine.
for dev in cuda cpu; do
    "$here/bin/ldm-engine" sample --device $dev --timings --out "$out/digits_$dev.png" > "$out/sample-$dev.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $dev = cuda ] && failed=1
    echo "| ldm-engine sample --device $dev | $rc | $(grep -E '^timings' "$out/sample-$dev.log" | tail -1) |" >> "$summary"
    save
done
for exe in "$here"/bin/bench-*; do
    name=$(basename "$exe")
    [ "$name" = bench-paper_configs ] && continue  # paper.sh: a call of its own
    timeout 240 "$exe" > "$out/$name.log" 2>&1  # each bench's share of the 10-minute call
    rc=$?
    echo "| $name | $rc | see $name.log |" >> "$summary"
    { echo; echo "## $name"; echo; grep -E '^(\||device:|allocator:)' "$out/$name.log"; } >> "$summary"
    save
done
# PyTorch (cuDNN conv, SDPA) on the tensor-core bench's shapes, in the same call: the ratio table.
if [ -f "$out/bench-tensor_core.log" ]; then
    timeout 200 ${PYTHON:-python3} tools/torch_bench/tensor_core.py --ours "$out/bench-tensor_core.log" --out "$out/tensor_core_vs_torch.md" > "$out/torch-tensor_core.log" 2>&1
    echo "| tools/torch_bench/tensor_core.py | $? | ratio table below |" >> "$summary"
    { echo; echo "## tensor-core kernels vs PyTorch"; echo; cat "$out/tensor_core_vs_torch.md" 2>/dev/null || tail -5 "$out/torch-tensor_core.log"; } >> "$summary"
fi
cat "$summary"
save
exit $failed
RUN
chmod +x "$bundle/run.sh"

cat > "$bundle/e2e.sh" <<'E2E'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: SD1.5-size text-to-image, PyTorch vs the engine.
set -uo pipefail
source "$(dirname "$0")/common.sh"
out=$here/results/e2e
mkdir -p "$out"
py=${PYTHON:-python3}
folder=/tmp/sd15_random
summary="$out/summary.md"
prompt="a photograph of an astronaut riding a horse"
# what is done so far goes back even if the call is cut off at its 10 minutes
save() { cp "$summary" "$dest/e2e-summary.md"; tar czf "$dest/e2e-logs.tgz" -C "$out" --exclude='*.safetensors' .; }
{
    echo "# SD1.5-size text-to-image, 512x512, 50 DDIM steps, CFG 7.5 (UNet batch 2): PyTorch vs ldm-engine, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- commit: $(tr '\n' ' ' < "$here/COMMIT")"
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
    echo "- torch: $($py -c 'import torch; print(torch.__version__, torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1)"
    echo "- weights: random (seed 0), SD1.5 configs, written by \`tools/torch_sd15/bench.py make\`; both sides load the same files and start from the same noise"
    echo "- command: bash gpu-bundle/e2e.sh (built by tools/gpu_check.sh)"
    echo
} > "$summary"
$py tools/torch_sd15/bench.py make "$folder" --dtype f16 > "$out/make.log" 2>&1 || { echo "make failed"; cat "$out/make.log"; }
# One more timed f16 run (--repeat 2) under environment switches ($2 …), named $1: its timings and
# its latents against PyTorch's go into the summary as "engine (50 steps, <switches>, --repeat 2)".
engine_variant() {
    local name=$1
    shift
    env "$@" timeout 100 "$here/bin/ldm-engine" sample --repeat 2 --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
        --steps 50 --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" \
        --save-latents "$out/$dt/latents_engine_$name.safetensors" --timings --out "$out/$dt/engine_$name.png" > "$out/engine-$dt-$name.log" 2>&1
    echo "engine (50 steps, $*, --repeat 2): exit $?" >> "$summary"
    grep -E '^(timings|error)' "$out/engine-$dt-$name.log" >> "$summary"
    $py tools/torch_sd15/bench.py compare "$out/$dt/latents_engine_$name.safetensors" "$out/$dt/latents_torch.safetensors" >> "$summary" 2>&1
}
for dt in f16 bf16; do
    echo "## $dt" >> "$summary"
    echo '```' >> "$summary"
    $py tools/torch_sd15/bench.py run "$folder" --out "$out/$dt" --dtype $dt > "$out/torch-$dt.log" 2>&1
    echo "torch (median of 3 after a warm-up):" >> "$summary"
    grep -E '^(torch|timings|peak)' "$out/torch-$dt.log" >> "$summary" || tail -3 "$out/torch-$dt.log" >> "$summary"
    # the engine twice: a 2-step warm-up process JIT-compiles the PTX (the driver caches the
    # result), then the timed process, which generates 4 times and reports the medians of the last
    # 3, like the torch side (--repeat); 200 s at most, so both dtypes fit in one 10-minute call
    for steps in 2 50; do
        run=$([ $steps = 2 ] && echo warm || echo timed)
        repeat=$([ $steps = 2 ] && echo 1 || echo 4)
        timeout 200 "$here/bin/ldm-engine" sample --repeat $repeat --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
            --steps $steps --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" \
            --save-latents "$out/$dt/latents_engine_$run.safetensors" --timings --out "$out/$dt/engine_$run.png" > "$out/engine-$dt-$run.log" 2>&1
        echo "engine ($steps steps, $run, --repeat $repeat): exit $?" >> "$summary"
    done
    grep -E '^(timings|peak|error)' "$out/engine-$dt-timed.log" >> "$summary"
    $py tools/torch_sd15/bench.py compare "$out/$dt/latents_engine_timed.safetensors" "$out/$dt/latents_torch.safetensors" >> "$summary" 2>&1
    # f16 once more with the UNet step replayed from a CUDA graph (src/pipelines/unet_graph.rs)
    if [ $dt = f16 ]; then
        LDM_CUDA_GRAPH=1 timeout 150 "$here/bin/ldm-engine" sample --repeat 4 --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
            --steps 50 --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" \
            --save-latents "$out/$dt/latents_engine_graph.safetensors" --timings --out "$out/$dt/engine_graph.png" > "$out/engine-$dt-graph.log" 2>&1
        echo "engine (50 steps, LDM_CUDA_GRAPH=1): exit $?" >> "$summary"
        grep -E '^(timings|peak|error)' "$out/engine-$dt-graph.log" >> "$summary"
        $py tools/torch_sd15/bench.py compare "$out/$dt/latents_engine_graph.safetensors" "$out/$dt/latents_torch.safetensors" >> "$summary" 2>&1
        # the conv forward's 128×128 tile against the 64×64 one on this workload (conv_tc.rs
        # nhwc_forward_kernel; shipped unmeasured, by the GEMM's measured rule)
        engine_variant tile64 LDM_CUDA_CONV=tile64
        # the kernel lab's attention variant 3 (tools/kernel_lab/attention_v3.cu): every unmasked
        # head-dim-40/80 attention of the UNet runs on it
        engine_variant lab_v3 LDM_CUDA_ATTENTION=lab-v3
        # every lab variant at once: attention v3, the GEMM's and the conv's cp.async ring with
        # ldmatrix (gemm_tc_ring.cu v4, conv_tc_v4.cu) where the shipped 128×128 tiles would run
        engine_variant lab_all LDM_CUDA_ATTENTION=lab-v3 LDM_CUDA_GEMM=lab-v4 LDM_CUDA_CONV=lab-v4
        # the GEMM and the conv on Hopper's wgmma (gemm_tc_wgmma_sm90a.cu, conv_tc_wgmma_sm90a.cu,
        # lab variants 5) where the shipped 128×128 tiles and split-K run
        engine_variant lab_v5 LDM_CUDA_GEMM=lab-v5 LDM_CUDA_CONV=lab-v5
        # where the GPU time goes: 3 steps with every kernel timed (src/backend/cuda/profile.rs)
        LDM_CUDA_PROFILE=1 timeout 100 "$here/bin/ldm-engine" sample --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
            --steps 3 --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" --out "$out/$dt/engine_profile.png" > "$out/engine-$dt-profile.log" 2>&1
        echo "engine (3 steps, LDM_CUDA_PROFILE=1): exit $?" >> "$summary"
        sed -n '/^kernel time/,$p' "$out/engine-$dt-profile.log" | head -45 >> "$summary"
        # the CUDA dry run's prediction of the same work (src/backend/cuda/dry_run.rs: no GPU
        # work, seconds): the profile's launch counts and the timed run's warm peak
        LDM_CUDA_DRY_RUN=1 timeout 60 "$here/bin/ldm-engine" sample --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
            --steps 3 --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" --out "$out/$dt/engine_dry.png" > "$out/engine-$dt-dry3.log" 2>&1
        $py tools/dry_run_vs_profile.py "$out/engine-$dt-profile.log" "$out/engine-$dt-dry3.log" >> "$summary" 2>&1
        LDM_CUDA_DRY_RUN=1 timeout 60 "$here/bin/ldm-engine" sample --repeat 4 --model "$folder" --prompt "$prompt" --device cuda --dtype $dt --sampler ddim \
            --steps 50 --cfg-scale 7.5 --width 512 --height 512 --init-noise "$out/$dt/noise.safetensors" --timings --out "$out/$dt/engine_dry.png" > "$out/engine-$dt-dry.log" 2>&1
        echo "dry run of the timed run (50 steps, --repeat 4): exit $?, predicted $(grep -E '^peak' "$out/engine-$dt-dry.log")" >> "$summary"
    fi
    echo '```' >> "$summary"
    save
done
cat "$summary"
save
E2E
chmod +x "$bundle/e2e.sh"

cat > "$bundle/paper.sh" <<'PAPER'
#!/usr/bin/env bash
# Runs on the GPU machine: samples/s of the paper's configs (benches/paper_configs.rs, f16 on the
# tensor cores by default; the device line says the dtype), 90 s per
# config so the five fit in one call.
set -uo pipefail
source "$(dirname "$0")/common.sh"
{
    echo "# Paper configs (Tab. 18 / Tab. 6), random weights, samples/s, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- commit: $(tr '\n' ' ' < "$here/COMMIT")"
    echo "- command: bash gpu-bundle/paper.sh → bench-paper_configs --budget-s 90"
    echo
    "$here/bin/bench-paper_configs" --budget-s 90 2>&1
} > "$dest/paper-configs.md"
cat "$dest/paper-configs.md"
PAPER
chmod +x "$bundle/paper.sh"
ls -la "$bundle"
# what travels: tracked files, untracked files git does not ignore, and the bundle
travel=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((travel + $(du -cb "$bundle" | tail -1 | cut -f1)))
echo "carried: $((total / 1048576)) MiB of the device tool's 64 MiB"
[ "$total" -le $((64 * 1048576)) ] || { echo "error: the bundle and the working tree exceed 64 MiB"; exit 1; }
echo "ready: run(command=\"bash $bundle/run.sh\", carry=[\"$bundle\"]) then run(command=\"bash $bundle/e2e.sh\", carry=[\"$bundle\"]) and run(command=\"bash $bundle/paper.sh\", carry=[\"$bundle\"])"
