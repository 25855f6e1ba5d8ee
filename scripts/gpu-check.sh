#!/usr/bin/env bash
# The GPU check (docs/benchmarks.md, "GPU"): builds upscaled with
# `--features cuda`, fetches the GPU runtime, runs spanx4_ch52 and
# realesrgan-x4plus on a 1 MP photo on the GPU and on the CPU, requires the
# two outputs to agree (PSNR-Y >= 45 dB, examples/score.rs) and prints seconds
# per input megapixel for each. Fails, saying so, where there is no GPU.
#
#   scripts/gpu-check.sh            (from the repository root or anywhere)
#
# Needs: cargo, python3 with pip (the wheels), an NVIDIA GPU of compute
# capability 7.5 or newer with a driver of the R580 series or newer (CUDA 13).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "gpu-check: FAILED: $*" >&2
    exit 1
}

# No GPU, no check: say so before building anything.
command -v nvidia-smi >/dev/null 2>&1 ||
    fail "no NVIDIA GPU: nvidia-smi is not installed (no NVIDIA driver on this machine)"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "$gpus" -ge 1 ] || fail "no NVIDIA GPU: nvidia-smi lists none"
nvidia-smi -L | head -1

export UPSCALED_CACHE=${UPSCALED_CACHE:-$PWD/.cache}
# The CUDA build in its own target folder, so the CPU build beside it stays.
cargo build --release --quiet
cargo build --release --quiet --example score
CARGO_TARGET_DIR=target/cuda cargo build --release --quiet --features cuda
cpu_bin=target/release/upscaled
gpu_bin=target/cuda/release/upscaled
score=target/release/examples/score

samples=$("$cpu_bin" fetch-samples)
# A CUDA build's `models fetch` installs the GPU runtime too.
"$gpu_bin" models fetch spanx4_ch52 realesrgan-x4plus

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in"
# The 1 MP photo: astronaut (512x512) enlarged to 1024x1024 without a model.
"$cpu_bin" process --model none --width 1024 --height 1024 --format png \
    -o "$work/in" "$samples/astronaut.png" >/dev/null
photo="$work/in/astronaut.png"
[ -f "$photo" ] || fail "could not make the 1 MP test photo"
# The GPU run does the photo twice: the first pays for starting CUDA and
# choosing cuDNN kernels, the second is the one timed.
cp "$photo" "$work/in/warm.png"

# Milliseconds of the upscale stage of the JSON report on stdin's line $1.
upscale_ms() {
    python3 -c '
import json, sys
line = sys.stdin.read().splitlines()[int(sys.argv[1])]
print(dict(json.loads(line)["stage_ms"])["upscale"])' "$1"
}

status=0
for model in spanx4_ch52 realesrgan-x4plus; do
    mkdir -p "$work/gpu-$model" "$work/cpu-$model"
    "$gpu_bin" process --model "$model" --format png --json -o "$work/gpu-$model" \
        "$photo" "$work/in/warm.png" >"$work/gpu-$model.json" 2>"$work/gpu-$model.log" ||
        { cat "$work/gpu-$model.log" >&2; fail "$model on the GPU build"; }
    if grep -q "running on the CPU" "$work/gpu-$model.log"; then
        grep "running on the CPU" "$work/gpu-$model.log" >&2
        fail "$model: the CUDA build fell back to the CPU"
    fi
    "$cpu_bin" process --model "$model" --format png --json -o "$work/cpu-$model" \
        "$photo" >"$work/cpu-$model.json" 2>"$work/cpu-$model.log" ||
        { cat "$work/cpu-$model.log" >&2; fail "$model on the CPU build"; }
    gpu_ms=$(upscale_ms 1 <"$work/gpu-$model.json")
    cpu_ms=$(upscale_ms 0 <"$work/cpu-$model.json")
    scored=$("$score" "$work/cpu-$model/astronaut.png" "$work/gpu-$model/astronaut.png") ||
        fail "$model: could not score the GPU output against the CPU's: $scored"
    psnr=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["psnr_y"])' "$scored")
    python3 - "$model" "$gpu_ms" "$cpu_ms" "$psnr" <<'EOF' || status=1
import sys
model, gpu_ms, cpu_ms, psnr = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
mp = 1024 * 1024 / 1e6
psnr = float("inf") if psnr in ("inf", "Infinity", "null", "None") else float(psnr)
ok = psnr >= 45.0
print(f"{model}: GPU {gpu_ms / 1000 / mp:.3f} s/MP, CPU {cpu_ms / 1000 / mp:.2f} s/MP, "
      f"GPU vs CPU output PSNR-Y {psnr:.1f} dB ({'ok' if ok else 'FAILED: below 45 dB'})")
sys.exit(0 if ok else 1)
EOF
done
[ "$status" -eq 0 ] || fail "GPU and CPU outputs differ"
echo "gpu-check: passed"
