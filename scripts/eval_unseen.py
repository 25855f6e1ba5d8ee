"""Smart mode on images it never saw: every source scripts/datasets.py puts in
the `unseen` role (whole packages the head was neither trained nor tuned on).

    python3 scripts/eval_unseen.py [path/to/upscaled]      (or: make eval-unseen)

Prints the classifier's accuracy per class (its most likely class) with a
95% Wilson interval and its confusion matrix; then the route Smart mode takes
(the least expected cost, which decides the model) the same way; the
product-on-white category on its own; each source's share; and the severe
misroutes, which must be 0:
- a natural picture (photo, face) routed as an illustration, i.e. to a
  drawing-only model;
- text routed to a generative model while the text detector found no line
  to protect: the illustration route at any level, the photo route at
  `best` (and, at every level, for a JPEG-damaged source).
Exits with 1 when there is a severe misroute. Results in docs/smart-mode.md.
"""

import json
import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["photo", "face", "text", "illustration"]


def wilson(k, n, z=1.96):
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def route_at(row, level):
    """The route at 4x and `level` (the table's generative models are at 4x)."""
    return (row.get("routes") or {}).get(level, {}).get("4", row["class"])


def severe(truth, row, level):
    route = route_at(row, level)
    if truth in ("photo", "face") and route == "illustration":
        return "natural picture to a drawing-only model"
    if truth != "text" or (row["features"].get("text_lines") or 0) > 0:
        return None
    if route == "illustration":
        return "text to a drawing-only model with no line protected"
    if route == "photo" and (level == "best" or row["jpeg_damaged"]):
        return f"text to the photo route's generative model at {level} with no line protected"
    return None


def pct(k, n):
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / max(n, 1):.1f}% (95% CI {100 * lo:.1f}–{100 * hi:.1f}%)"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/upscaled")
    listing = subprocess.run(
        [sys.executable, str(ROOT / "scripts/datasets.py"), "list", "--role", "unseen"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    items = [line.split("\t") for line in listing.splitlines() if line.strip()]
    truth = {i[0]: i for i in items}
    rows = []
    for start in range(0, len(items), 50):
        batch = [i[0] for i in items[start : start + 50]]
        run = subprocess.run(
            [binary, "classify", *batch],
            capture_output=True,
            text=True,
            env={**os.environ, "RUST_LOG": "error"},
        )
        rows += [json.loads(line) for line in run.stdout.splitlines()]
        for err in run.stderr.splitlines():
            if err.strip():
                print(f"unreadable, not counted: {err}")
        print(f"  classified {len(rows)}/{len(items)}", file=sys.stderr)

    sources = {i[3] for i in items}
    print(f"# Smart mode on unseen images: {len(rows)} images from {len(sources)} sources\n")
    confusion = defaultdict(Counter)
    routes = {level: defaultdict(Counter) for level in ("balanced", "best")}
    by_source = defaultdict(Counter)
    by_category = defaultdict(Counter)
    severe_rows = []
    for row in rows:
        path, label, category, source = truth[row["file"]][:4]
        likely = row.get("likely", row["class"])
        confusion[label][likely] += 1
        for level in routes:
            routes[level][label][route_at(row, level)] += 1
        by_source[(source, label)]["n"] += 1
        by_source[(source, label)]["ok"] += likely == label
        if category:
            by_category[category]["n"] += 1
            by_category[category]["ok"] += likely == label
            by_category[category][route_at(row, "balanced")] += 1
        for level in ("balanced", "best"):
            why = severe(label, row, level)
            if why:
                severe_rows.append((level, source, path, label, row, why))

    def table(title, matrix):
        print(f"{title}\n")
        total = sum(sum(c.values()) for c in matrix.values())
        right = sum(matrix[c][c] for c in CLASSES)
        for c in CLASSES:
            n = sum(matrix[c].values())
            if n:
                print(f"- {c}: {pct(matrix[c][c], n)}")
        print(f"- all: {pct(right, total)}\n")
        print("| truth \\ predicted | " + " | ".join(CLASSES) + " | n |")
        print("|---" * (len(CLASSES) + 2) + "|")
        for c in CLASSES:
            n = sum(matrix[c].values())
            if n:
                print(f"| {c} | " + " | ".join(str(matrix[c][r]) for r in CLASSES) + f" | {n} |")
        print()

    table("Classification (the most likely class) per class:", confusion)
    for level, matrix in routes.items():
        table(
            f"Route at 4x {level} (the least expected cost with the models the routes run "
            "there: a sure class takes its own route, an unsure one the route whose mistakes "
            "cost least; routes that run the same model cost nothing between them):",
            matrix,
        )
    for cat, counts in sorted(by_category.items()):
        taken = ", ".join(f"{r} {counts[r]}" for r in CLASSES if counts[r])
        print(
            f"Category {cat}: classified photo {pct(counts['ok'], counts['n'])}; "
            f"routes at 4x balanced: {taken}"
        )
    print("\nPer source (classified as labelled):\n")
    for (source, label), counts in sorted(by_source.items()):
        print(f"- {source} ({label}): {counts['ok']}/{counts['n']}")
    for level in ("balanced", "best"):
        at = [r for r in severe_rows if r[0] == level]
        print(f"\nSevere misroutes at {level}: {len(at)}")
        for _, source, path, label, row, why in at:
            p = row.get("probabilities") or {}
            print(f"- {source}: {Path(path).name} ({label}) -> {route_at(row, level)}: {why}; probabilities {p}")
    return 1 if severe_rows else 0


if __name__ == "__main__":
    sys.exit(main())
