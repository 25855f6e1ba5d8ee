#!/bin/sh
# Seconds per input megapixel of catalog models as imported with channels
# padded, and as imported by default (element-wise ops kept in ONNX Runtime's
# blocked layout), each against a plain import of the same weights, with the
# largest output difference between the two (docs/benchmarks.md, "Channel
# padding" and "Blocked layout").
#
# Usage: scripts/bench_models.sh [IMAGE [MODEL...]]
#   IMAGE defaults to the scikit-image coffee photo in the cache; with MODELs
#   named, only the default import of those is compared. Needs `upscaled models fetch` once (runtime, wheels).
#   SIDE, REPEAT and THREADS override the crop side (256), the runs per
#   variant (7; the fastest counts) and the intra-op threads (2);
#   CARGO_FLAGS is passed to cargo (e.g. --no-default-features).
set -eu
cd "$(dirname "$0")/.."
image=${1:-${UPSCALED_CACHE:-.cache}/samples/coffee.png}
[ $# -gt 0 ] && shift
echo "$(date -u +%Y-%m-%d), $(nproc) cores, side ${SIDE:-256}, fastest of ${REPEAT:-7}"
bench() {
	# shellcheck disable=SC2086 # CARGO_FLAGS is a list of flags
	cargo run --release --quiet ${CARGO_FLAGS:-} --example bench_models -- \
		--side "${SIDE:-256}" --repeat "${REPEAT:-7}" --threads "${THREADS:-2}" "$@"
}
if [ $# -gt 0 ]; then
	bench "$image" "$@"
	exit
fi
echo "Channel padding (SPAN):"
bench --padded "$image" spanx4_ch48 spanx4_ch52 spanx2_ch48 spanx2_ch52
echo "Blocked layout (the default import against a plain one):"
bench "$image" realesr-animevideov3-x4 realesrgan-x4plus realcugan-se-4x-conservative waifu2x-cunet-2x
