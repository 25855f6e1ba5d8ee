#!/bin/sh
# Resident memory of a running daemon over N files (default 1000): its RSS
# once the first 50 are done and once all are, and its peak (docs/benchmarks.md,
# "Memory"). The files are 128 px photos-like images, each different, dropped
# into a folder with a 512x512 WebP target, so each takes a 4x model, a resize
# and an encode.
#
# Usage: scripts/daemon_rss.sh BIN [N]   (needs `upscaled models fetch` once)
set -eu
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
count=${2:-1000}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/in" "$work/out" "$work/src"
python3 - "$work/src" "$count" <<'PY'
import math, random, struct, sys, zlib
folder, count = sys.argv[1], int(sys.argv[2])
def png(path, w, h, rows):
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(count):
    rnd = random.Random(i)
    cx, cy, r = rnd.uniform(20, 108), rnd.uniform(20, 108), rnd.uniform(10, 50)
    base = [rnd.randrange(256) for _ in range(3)]
    rows = []
    for y in range(128):
        row = []
        for x in range(128):
            inside = math.hypot(x - cx, y - cy) < r
            for c in range(3):
                v = base[c] if inside else (x * 2 + y + c * 40) % 256
                row.append(max(0, min(255, v + rnd.randrange(-12, 13))))
        rows.append(row)
    png(f"{folder}/photo-{i:04d}.png", 128, 128, rows)
PY
cat > "$work/config.yaml" <<YAML
threads: 2
log_format: text
folders:
  - path: $work/in
    output: $work/out
    width: 512
    height: 512
    fit: contain
    formats: [webp]
    settle: 200ms
    smart:
      quality: fast
YAML
"$bin" run --config "$work/config.yaml" >"$work/log" 2>&1 &
pid=$!
sleep 3
rss() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status"; }
done_count() { find "$work/out" -name '*.webp' | wc -l; }
# Drop the files in batches, so the watcher sees a steady stream.
started=$(date +%s)
first=""
for f in "$work"/src/*.png; do
	mv "$f" "$work/in/"
	while [ $(($(find "$work/in" -maxdepth 1 -name '*.png' | wc -l))) -gt 20 ]; do sleep 0.2; done
	[ -z "$first" ] && [ "$(done_count)" -ge 50 ] && first=$(rss)
done
while [ "$(done_count)" -lt "$count" ]; do
	kill -0 "$pid" || { cat "$work/log"; exit 1; }
	[ $(($(date +%s) - started)) -lt 3600 ] || { echo "timed out" >&2; exit 1; }
	sleep 1
done
peak=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")
echo "$(date -u +%Y-%m-%d): $count files in $(($(date +%s) - started)) s; RSS after 50: ${first:-?} MiB, after $count: $(rss) MiB, peak $peak MiB; failed: $(find "$work/in/failed" -type f -name '*.png' 2>/dev/null | wc -l)"
