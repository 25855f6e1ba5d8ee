"""Reads `upscaled classify --json` lines on stdin; prints how many got the
expected class and lists the others with the evidence that decided them."""

import json
import sys

expected, label = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in sys.stdin]
misses = [r for r in rows if r["class"] != expected]
hits = len(rows) - len(misses)
print(f"{label}: {hits}/{len(rows)} classed {expected} ({100 * hits / max(len(rows), 1):.1f}%)")
for r in misses:
    name = r["file"].rsplit("/", 1)[-1]
    f = r["features"]
    print(f"  {name}: {r['class']} (drawn {f['drawn']}, lines {f['lines']:.3f}, text lines {f['text_lines']})")
