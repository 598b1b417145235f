#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) from the committed seeds for RUNS executions
# each (default 1,000,000; or MAX_SECONDS, default 600, whichever comes first) and prints one line
# per target: executions, seconds, corpus size, crashes. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). The growing corpus goes to fuzz/corpus/ (gitignored);
# crashes to fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
# Usage: tools/fuzz.sh [target ...]
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS=${RUNS:-1000000}
MAX_SECONDS=${MAX_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_header config_json tokenizers image_decode)
cargo +nightly fuzz build -O >&2 || exit 1
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log=$(mktemp)
    start=$(date +%s)
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -runs="$RUNS" -max_total_time="$MAX_SECONDS" -max_len=65536 -print_final_stats=1 > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c '^crash-\|^oom-\|^timeout-' || true)
    echo "$t: ${execs:-?} executions in ${secs}s, corpus $(ls "corpus/$t" | wc -l) inputs, exit $rc, crash/oom/timeout files: $crashes"
    if [ $rc -ne 0 ]; then
        status=1
        grep -E 'panicked|ERROR|SUMMARY|deadly' "$log" | head -5
    fi
    rm -f "$log"
done
exit $status
