#!/usr/bin/env bash
# Builds the fuzz targets and runs each one in turn (docs/fuzzing.md).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 30: `make fuzz-smoke`); all targets unless named.
# Each run starts from the committed corpus (fuzz/corpus/<target>) and seeds
# (fuzz/seeds/<target>); what it finds new goes to fuzz/corpus-run/<target>
# (ignored by git), so a run never changes committed files. Exits non-zero
# when any target crashed, timed out or ran out of memory; the input that did
# it is in fuzz/artifacts/<target>/.
#
# One fuzzing process at a time (libFuzzer's default; -jobs=1 -workers=1 would
# be the same one process, writing fuzz-0.log into the working directory).
#
# Environment: FUZZ_SANITIZER (address, the default, or none),
# CARGO_FUZZ_VERSION (default 0.13.2).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true

cargo_fuzz_version=${CARGO_FUZZ_VERSION:-0.13.2}
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# The address sanitizer needs -Zsanitizer; RUSTC_BOOTSTRAP lets a stable
# toolchain accept it (no nightly needed).
export RUSTC_BOOTSTRAP=1
# An outer CARGO_TARGET_DIR would mix these instrumented builds with the
# daemon's; they keep to fuzz/target.
unset CARGO_TARGET_DIR
build=(--sanitizer "${FUZZ_SANITIZER:-address}" --codegen-units 16 --target-dir fuzz/target)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
cargo fuzz build "${build[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - started)) s"

failed=()
for target in "${targets[@]}"; do
    case $target in
        config) max_len=8192 ;;
        *) max_len=65536 ;;
    esac
    run_corpus=fuzz/corpus-run/$target
    mkdir -p "$run_corpus" "fuzz/corpus/$target" "fuzz/seeds/$target"
    echo "fuzz: $target for $seconds s"
    if ! cargo fuzz run "${build[@]}" "$target" \
        "$run_corpus" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 -timeout=10 -max_len="$max_len" \
        -print_final_stats=1 2>"fuzz/corpus-run/$target.log"; then
        tail -n 60 "fuzz/corpus-run/$target.log"
        failed+=("$target")
    fi
    grep -E "^#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb" \
        "fuzz/corpus-run/$target.log" | sed "s/^/fuzz: $target: /" || true
done

echo "fuzz: ${#targets[@]} targets, $seconds s each, $(($(date +%s) - started)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
