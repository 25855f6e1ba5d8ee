#!/usr/bin/env bash
# Cluster throughput (docs/cluster.md): the same files through local mode,
# then through NATS with one and with two worker processes, each worker held
# to one core (taskset) and one inference thread.
#
#   scripts/bench_cluster.sh BIN [FILES]
#
# Prints seconds to drain the folder, files per second, and the extra time
# per file of going through NATS (1 worker vs local mode, same core budget).
set -euo pipefail
bin=$(realpath "$1")
files=${2:-60}
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ ! -x "$nats" ]; then
    echo "SKIPPED: nats-server not installed (apt-get install nats-server)"
    exit 0
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$nats" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$work/nats.log" 2>&1 &
sleep 1

# Sources: crops of the scikit-image photos, 96x96, to a 192x192 WebP (2x).
samples=$("$bin" fetch-samples)
mkdir -p "$work/src"
python3 - "$samples" "$work/src" "$files" <<'PY'
import sys, os, zlib, struct
samples, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Tiny PNG writer (no Pillow needed): gradients with noise, distinct per file.
def png(path, w, h, seed):
    rows = b""
    x = seed * 2654435761 & 0xffffffff
    for j in range(h):
        row = bytearray([0])
        for i in range(w):
            x = (x * 1103515245 + 12345) & 0x7fffffff
            row += bytes(((i * 3 + seed * 7) % 256, (j * 2 + (x >> 16) % 24) % 256, (i * j + seed) % 256))
        rows += row
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)
for k in range(n):
    png(os.path.join(out, f"p{k:04d}.png"), 96, 96, k)
PY

config() { # name cluster-lines
    mkdir -p "$work/$1/in" "$work/$1/out"
    {
        [ -z "$2" ] || printf '%s\n' "$2"
        printf 'threads: 1\nfolders:\n  - path: %s\n    output: %s\n    width: 192\n    height: 192\n    formats: [webp]\n    settle: 100ms\n' \
            "$work/$1/in" "$work/$1/out"
    } >"$work/$1.yaml"
}

drain() { # name -> seconds until every file is in done/
    local start end
    start=$(date +%s.%N)
    cp "$work"/src/*.png "$work/$1/in/"
    local limit=$((SECONDS + 900))
    while [ "$(find "$work/$1/in/done" -name '*.png' 2>/dev/null | wc -l)" -lt "$files" ]; do
        if [ $SECONDS -gt $limit ]; then
            echo "$1 did not finish in 900 s; logs in $work (KEEP=1 keeps them)" >&2
            exit 1
        fi
        if [ -n "$(find "$work/$1/in/failed" -name '*.png' 2>/dev/null)" ]; then
            echo "failed files in $1" >&2
            exit 1
        fi
        sleep 0.1
    done
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
}

report() { # label seconds
    python3 -c "print(f'{\"$1\":<44} {$2:>7.2f} s  {$files / $2:>6.2f} files/s')"
}

echo "cluster bench: $files files, 96x96 -> 192x192 WebP (2x model), $(nproc) cores"

config local ""
taskset -c 0 "$bin" run --config "$work/local.yaml" --workers 1 2>"$work/local.log" &
pid=$!
sleep 2
t_local=$(drain local)
kill $pid; wait $pid 2>/dev/null || true
report "local mode, 1 worker on 1 core" "$t_local"

cluster=$(printf 'cluster:\n  nats: nats://127.0.0.1:%s\n  name: bench%%s\n  workers: 0\n' "$port")
run_cluster() { # name workers
    config "$1" "$(printf "$cluster" "$1")"
    "$bin" run --config "$work/$1.yaml" 2>"$work/$1.log" &
    local coord=$! pids=()
    for k in $(seq 1 "$2"); do
        taskset -c $(( (k - 1) % $(nproc) )) "$bin" worker --nats "nats://127.0.0.1:$port" \
            --name "$1-w$k" --threads 1 2>"$work/$1-w$k.log" &
        pids+=($!)
    done
    sleep 3
    drain "$1"
    kill "$coord" "${pids[@]}"
    wait "$coord" "${pids[@]}" 2>/dev/null || true
}
t_one=$(run_cluster one 1)
report "NATS, 1 worker process on 1 core" "$t_one"
t_two=$(run_cluster two 2)
report "NATS, 2 worker processes, 1 core each" "$t_two"
python3 -c "print(f'speed-up 2 vs 1 workers: {$t_one / $t_two:.2f}x; NATS overhead per file vs local: {($t_one - $t_local) / $files * 1000:.0f} ms')"
