"""Trains Smart mode's classification head (models/smart-head.json).

    python3 scripts/train_head.py [path/to/upscaled]      (or: make train-head)

The head is a multinomial logistic regression over what `upscaled classify
--inputs` reports for a picture: the drawing network's 128-wide embedding and
five classes, the image statistics, the face and text detectors' readings and
the JPEG evidence. It tells three families apart: natural (photos, faces,
product shots), text (screens, pages) and drawing (illustration, anime, clip
art). Whether a natural picture is a face is the face detector's call.

Images come from scripts/datasets.py, whose sources are split by package into
train, validation and unseen; this script reads only train and validation.
The weights are fitted on train (Newton's method, L2, each source weighted
equally within its family and each family equally); the L2 strength and a
calibration temperature are chosen on validation. Standardisation and the
temperature are folded into the weights, so the Rust side computes one
matrix product and a softmax.

Everything is deterministic: the same images and binary give the same file.
The run also writes models/smart-head-check.json, a fixed sample of
validation inputs with the probabilities computed here, which a test
replays through the Rust head.
"""

import hashlib
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("UPSCALED_CACHE", ROOT / ".cache"))
FAMILIES = ["natural", "text", "drawing"]
FAMILY_OF = {"photo": 0, "face": 0, "text": 1, "illustration": 2}
L2_GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 30.0, 100.0]
CHECK_SAMPLE = 40


def numpy():
    """numpy, installed into the cache on first use (not needed by the daemon)."""
    target = CACHE / "python"
    sys.path.insert(0, str(target))
    try:
        import numpy as np
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "numpy==2.2.6"],
            check=True,
            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"},
        )
        importlib.invalidate_caches()
        import numpy as np
    return np


def listed(role):
    """(path, label, category, source, package) of every image of a role."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/datasets.py"), "list", "--role", role],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return [tuple(r[:5]) for r in rows]


def features(binary, paths):
    """The head's inputs for each path, cached by file content and binary."""
    stamp = hashlib.sha1(Path(binary).read_bytes()).hexdigest()[:16]
    cache_file = CACHE / "head-features" / f"{stamp}.jsonl"
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    known = {}
    if cache_file.exists():
        for line in cache_file.read_text().splitlines():
            row = json.loads(line)
            known[row["key"]] = row
    key_of = {p: hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths}
    todo = [p for p in paths if key_of[p] not in known]
    with cache_file.open("a") as cache:
        for start in range(0, len(todo), 50):
            batch = todo[start : start + 50]
            print(f"  features: {start + len(batch)}/{len(todo)} new", file=sys.stderr)
            run = subprocess.run(
                [binary, "classify", "--inputs", *batch],
                capture_output=True,
                text=True,
                env={**os.environ, "RUST_LOG": "error"},
            )
            for line in run.stdout.splitlines():
                row = json.loads(line)
                if row.get("inputs") is None:
                    sys.exit(f"{row['file']}: no head inputs (is the drawing network installed?)")
                entry = {
                    "key": key_of[row["file"]],
                    "names": row["input_names"],
                    "inputs": row["inputs"],
                }
                known[entry["key"]] = entry
                cache.write(json.dumps(entry) + "\n")
            for err in run.stderr.splitlines():
                if err.strip():
                    print(f"  skipped: {err}", file=sys.stderr)
    return {p: known[key_of[p]] for p in paths if key_of[p] in known}


def matrix(np, rows, feats):
    kept = [r for r in rows if r[0] in feats]
    x = np.array([feats[r[0]]["inputs"] for r in kept], dtype=np.float64)
    y = np.array([FAMILY_OF[r[1]] for r in kept])
    return kept, x, y


def source_weights(np, kept, y):
    """Each family weighs the same, and within it each source the same."""
    w = np.zeros(len(kept))
    for fam in range(len(FAMILIES)):
        sources = sorted({kept[i][3] for i in range(len(kept)) if y[i] == fam})
        for s in sources:
            idx = [i for i in range(len(kept)) if y[i] == fam and kept[i][3] == s]
            w[idx] = 1.0 / (len(sources) * len(idx))
    return w / w.sum()


def softmax(np, z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit(np, x, y, w, l2):
    """Weighted multinomial logistic regression by damped Newton steps."""
    n, d = x.shape
    k = len(FAMILIES)
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros((d + 1, k))
    onehot = np.eye(k)[y]
    # The bias gets a tiny penalty only to make the Hessian invertible
    # (softmax is unchanged by adding a constant to every class).
    penalty = np.full(d + 1, l2)
    penalty[-1] = 1e-8

    def loss(t):
        p = softmax(np, xb @ t)
        return -(w * np.log((p * onehot).sum(axis=1) + 1e-300)).sum() + 0.5 * (
            penalty[:, None] * t * t
        ).sum()

    current = loss(theta)
    for _ in range(100):
        p = softmax(np, xb @ theta)
        grad = xb.T @ (w[:, None] * (p - onehot)) + penalty[:, None] * theta
        hess = np.zeros(((d + 1) * k, (d + 1) * k))
        for a in range(k):
            for b in range(k):
                coef = w * p[:, a] * ((a == b) - p[:, b])
                block = xb.T @ (coef[:, None] * xb)
                if a == b:
                    block += np.diag(penalty)
                hess[a * (d + 1) : (a + 1) * (d + 1), b * (d + 1) : (b + 1) * (d + 1)] = block
        g = grad.T.reshape(-1)
        step = np.linalg.solve(hess + 1e-10 * np.eye(len(g)), g).reshape(k, d + 1).T
        scale = 1.0
        while scale > 1e-6:
            trial = theta - scale * step
            trial_loss = loss(trial)
            if trial_loss <= current:
                break
            scale /= 2
        else:
            break  # no step improves: at the optimum to rounding
        theta, previous, current = trial, current, trial_loss
        if previous - current < 1e-12:
            break
    return theta


def logits(np, theta, x):
    return np.hstack([x, np.ones((len(x), 1))]) @ theta


def weighted_nll(np, z, y, w):
    p = softmax(np, z)
    return -(w * np.log(p[np.arange(len(y)), y] + 1e-300)).sum() / w.sum()


def temperature(np, z, y, w):
    """The T minimising validation log-loss of softmax(z / T) (golden section on log T)."""
    lo, hi = math.log(0.05), math.log(20.0)
    phi = (math.sqrt(5) - 1) / 2
    f = lambda lt: weighted_nll(np, z / math.exp(lt), y, w)  # noqa: E731
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = f(b)
    return math.exp((lo + hi) / 2)


def calibration_error(np, p, y, bins=10):
    """Expected calibration error of the top probability (unweighted)."""
    top = p.max(axis=1)
    right = p.argmax(axis=1) == y
    ece = 0.0
    for i in range(bins):
        m = (top > i / bins) & (top <= (i + 1) / bins)
        if m.any():
            ece += m.mean() * abs(top[m].mean() - right[m].mean())
    return ece


def report(np, name, p, y, kept):
    pred = p.argmax(axis=1)
    lines = [f"{name}: accuracy {np.mean(pred == y):.3f} on {len(y)} images"]
    for fam, fname in enumerate(FAMILIES):
        m = y == fam
        if m.any():
            lines.append(f"  {fname}: {int((pred[m] == fam).sum())}/{int(m.sum())}")
    print("\n".join(lines))
    return float(np.mean(pred == y))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/upscaled")
    np = numpy()
    train_rows, val_rows = listed("train"), listed("validation")
    if not train_rows or not val_rows:
        sys.exit("scripts/datasets.py lists no train or validation images")
    print(f"train {len(train_rows)} images, validation {len(val_rows)}", file=sys.stderr)
    feats = features(binary, sorted({r[0] for r in train_rows + val_rows}))
    names = next(iter(feats.values()))["names"]
    train, xt, yt = matrix(np, train_rows, feats)
    val, xv, yv = matrix(np, val_rows, feats)
    wt, wv = source_weights(np, train, yt), source_weights(np, val, yv)

    # Which inputs to read is chosen on validation like the L2 strength: the
    # drawing network's embedding can fit the style of the few training
    # packages instead of what makes a picture drawn.
    # The file's container is left out: in the training packages drawings
    # are PNG (often cut-outs with alpha) and photographs JPEG, so the head
    # would learn "PNG means drawn" and send a shop's PNG product photo to
    # the anime model. Blockiness, which looks at the pixels, stays.
    usable = [i for i, n in enumerate(names) if n not in ("alpha", "jpeg", "jpeg_quality")]
    input_sets = {
        "all": usable,
        "without the embedding": [i for i in usable if not names[i].startswith("embedding.")],
    }
    best = None
    for set_name, cols in input_sets.items():
        mean = xt[:, cols].mean(axis=0)
        std = xt[:, cols].std(axis=0)
        std[std < 1e-9] = 1.0
        st = (xt[:, cols] - mean) / std
        sv = (xv[:, cols] - mean) / std
        for l2 in L2_GRID:
            theta = fit(np, st, yt, wt, l2)
            nll = weighted_nll(np, logits(np, theta, sv), yv, wv)
            print(f"  {set_name}, l2 {l2:g}: validation log-loss {nll:.4f}", file=sys.stderr)
            if best is None or nll < best[0]:
                best = (nll, set_name, cols, l2, theta, mean, std, st, sv)
    _, set_name, cols, l2, theta, mean, std, st, sv = best
    print(f"inputs: {set_name} ({len(cols)})")
    zv = logits(np, theta, sv)
    t = temperature(np, zv, yv, wv)
    p_raw, p_cal = softmax(np, zv), softmax(np, zv / t)
    print(f"chosen l2 {l2:g}, temperature {t:.3f}")
    print(
        f"validation calibration error {calibration_error(np, p_raw, yv):.3f} before, "
        f"{calibration_error(np, p_cal, yv):.3f} after the temperature"
    )
    train_acc = report(np, "train", softmax(np, logits(np, theta, st) / t), yt, train)
    val_acc = report(np, "validation", p_cal, yv, val)

    # Fold standardisation and temperature into raw-input weights.
    w_std = theta[:-1] / std[:, None] / t
    bias = (theta[-1] - (theta[:-1] * (mean / std)[:, None]).sum(axis=0)) / t
    head = {
        "about": "Smart mode's head, written by scripts/train_head.py; see docs/smart-mode.md",
        "inputs": [names[i] for i in cols],
        "families": FAMILIES,
        "weights": [[float(v) for v in w_std[:, k]] for k in range(len(FAMILIES))],
        "bias": [float(v) for v in bias],
        "training": {
            "input_set": set_name,
            "l2": l2,
            "temperature": t,
            "train_images": len(train),
            "validation_images": len(val),
            "train_accuracy": train_acc,
            "validation_accuracy": val_acc,
            "train_sources": sorted({r[4] for r in train}),
            "validation_sources": sorted({r[4] for r in val}),
        },
    }
    (ROOT / "models/smart-head.json").write_text(json.dumps(head, indent=1) + "\n")

    # A fixed sample of validation pictures, chosen by name, with what the
    # head gives them here: the Rust head must give the same.
    order = sorted(range(len(val)), key=lambda i: hashlib.sha1(Path(val[i][0]).name.encode()).hexdigest())
    sample = order[:CHECK_SAMPLE]
    raw = np.hstack([xv[sample][:, cols], np.ones((len(sample), 1))]) @ np.vstack([w_std, bias])
    p_sample = softmax(np, raw)
    check = {
        "about": "validation inputs and their probabilities from scripts/train_head.py",
        "accuracy": float(np.mean(p_sample.argmax(axis=1) == yv[sample])),
        "samples": [
            {
                "file": Path(val[i][0]).name,
                "family": FAMILIES[int(yv[i])],
                "inputs": [float(v) for v in xv[i]],
                "probabilities": [float(v) for v in p_sample[j]],
            }
            for j, i in enumerate(sample)
        ],
    }
    (ROOT / "models/smart-head-check.json").write_text(json.dumps(check) + "\n")
    print(f"wrote models/smart-head.json and models/smart-head-check.json (sample accuracy {check['accuracy']:.3f})")


if __name__ == "__main__":
    main()
