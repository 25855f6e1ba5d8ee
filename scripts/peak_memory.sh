#!/bin/sh
# Peak resident memory (RSS) of whole `upscaled process` runs, one per line:
# 4x jobs of each model family under the default 1 GiB budget
# (limits.memory_mib), and the working bytes per tile pixel that the catalog's
# `tile_bytes_per_pixel` holds (docs/benchmarks.md, "Memory").
#
# Usage: scripts/peak_memory.sh BIN [table|measure MODEL...]
#   table (the default) prints the jobs' peaks; measure prints, per model,
#   the growth of the peak from a 64 px to a 256 px tile per added tile
#   pixel (tiles counted with their 16 px of context) and what is left
#   before the first tile; tiles prints, per model, how far the output of
#   the tile the budget picks and of the old fixed 384 px tile are from the
#   model run on the whole 512 px photo at once (PSNR-Y, dB). Needs
#   `upscaled models fetch` and `upscaled fetch-samples` once.
set -eu
cd "$(dirname "$0")/.."
bin=$1
mode=${2:-table}
[ $# -ge 2 ] && shift 2 || shift $#
dir=target/bench/memory
mkdir -p "$dir"
sample=${UPSCALED_CACHE:-.cache}/samples/coffee.png
# Test photos of exact sizes, cut from a real photo with Lanczos3.
for side in 256 512 1024 2048; do
	[ -f "$dir/photo-$side.png" ] && continue
	"$bin" process --model none --width "$side" --height "$side" --fit cover \
		--format png -o "$dir/in-$side" "$sample" >/dev/null 2>&1
	mv "$dir/in-$side"/*.png "$dir/photo-$side.png"
	rm -rf "$dir/in-$side"
done

# peak MODEL SIDE [ARGS...]: prints "MiB seconds" of one run.
peak() {
	model=$1 side=$2
	shift 2
	rm -rf "$dir/out"
	/usr/bin/time -f "%M %e" -o "$dir/time" "$bin" process --model "$model" --format png \
		-o "$dir/out" "$@" "$dir/photo-$side.png" >/dev/null 2>"$dir/log" || {
		cat "$dir/log" >&2
		exit 1
	}
	awk '{ printf "%d %s", $1 / 1024, $2 }' "$dir/time"
}

if [ "$mode" = measure ]; then
	[ $# -gt 0 ] || set -- spanx4_ch48 spanx4_ch52 spanx2_ch48 realesrgan-x4plus realcugan-se-4x-conservative realcugan-se-2x-conservative realesr-animevideov3-x4 waifu2x-cunet-2x waifu2x-upconv7-photo-2x
	echo "model, peak MiB at tile 64 and 256 (256 px photo), working bytes per tile pixel, MiB before the first tile, model file MiB"
	for model in "$@"; do
		small=$(peak "$model" 256 --tile 64 --memory-mib 100000 | cut -d' ' -f1)
		large=$(peak "$model" 256 --tile 256 --memory-mib 100000 | cut -d' ' -f1)
		# Tiles with their 16 px of context each side: 96 and 288 px.
		per_pixel=$(((large - small) * 1048576 / (288 * 288 - 96 * 96)))
		base=$((small - per_pixel * 96 * 96 / 1048576))
		file=$(($(stat -c %s "${UPSCALED_MODELS:-models}/$model.onnx") / 1048576))
		echo "$model $small $large $per_pixel $base $file"
	done
	exit 0
fi

if [ "$mode" = tiles ]; then
	[ $# -gt 0 ] || set -- realesrgan-x4plus realcugan-se-4x-conservative spanx4_ch52
	cargo build --release --quiet --example score
	echo "model, PSNR-Y against the untiled run: budget tile, 384 px tile (dB)"
	for model in "$@"; do
		for run in whole:"--tile 0 --memory-mib 100000" fixed:"--tile 384 --memory-mib 100000" budget:""; do
			# shellcheck disable=SC2086 # the flags are a list
			peak "$model" 512 ${run#*:} >/dev/null
			mv "$dir"/out/*.png "$dir/$model-${run%%:*}.png"
		done
		target/release/examples/score "$dir/$model-whole.png" "$dir/$model-budget.png" \
			"$dir/$model-whole.png" "$dir/$model-fixed.png" |
			awk -v m="$model" -F'[:,]' '{ p[NR] = $2 } END { print m, p[1], p[2] }'
	done
	exit 0
fi

echo "$(date -u +%Y-%m-%d), $(nproc) cores; default budget (limits.memory_mib 1024)"
echo "model | input | job | peak RSS MiB | seconds"
row() {
	model=$1 side=$2 job=$3
	shift 3
	set -- $(peak "$model" "$side" "$@")
	echo "$model | ${side}x$side | $job | $1 | $2"
}
row realesrgan-x4plus 512 "4x, PNG of the whole 2048x2048"
row realcugan-se-4x-conservative 1024 "4x, PNG of the whole 4096x4096"
row realesr-animevideov3-x4 1024 "4x, PNG of the whole 4096x4096"
row spanx4_ch48 1024 "4x, PNG of the whole 4096x4096"
row spanx4_ch52 1024 "4x, PNG of the whole 4096x4096"
row spanx4_ch52 2048 "4x streamed into a 2048x2048 PNG" --width 2048 --height 2048
