#!/usr/bin/env python3
"""Smart mode's routing table, measured (`make eval-routes`).

    python3 scripts/eval_routes.py [path/to/upscaled]

High-resolution (HR) images with a known class are cropped to a centre square
of at most 256 px, degraded (Pillow bicubic ÷4; and ÷4 then JPEG quality 75),
and upscaled back by Smart mode at each level and by every model that
config/routes.yaml names, each forced with `process --model`. Every output is
scored against the HR with `examples/score.rs` (PSNR-Y, BasicSR convention,
and SSIMULACRA2, both after shaving `scale` pixels at every border). The
tables go to stdout and $UPSCALED_CACHE/eval-routes.md; results are in
docs/smart-mode.md ("Route evaluation").

HR sources: scikit-image's sample images (`upscaled fetch-samples`), labelled
by hand below; 4 images per class from `scripts/datasets.py list` where that
script exists; Set5 (../shared/data/sr) where present. Outputs are cached by
(image, degradation, model) in $UPSCALED_CACHE/eval-routes/, so a rerun only
scores; Smart mode's outputs are redone when the binary or routes.yaml change
(delete that folder to start over).
EVAL_ROUTES_SCALES=4 skips the 2x half (÷2 degradations, 2x models);
EVAL_ROUTES_SCORE=path uses a scorer built elsewhere; EVAL_ROUTES_DATASETS=skip
leaves scripts/datasets.py out (the dev set ../shared/data/classify stands in).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("UPSCALED_CACHE", ROOT / ".cache")).resolve()
WORK = CACHE / "eval-routes"
CLASSES = ["photo", "face", "text", "illustration"]
LEVELS = ["fast", "balanced", "best"]
DEGRADATIONS = ["bicubic", "jpeg75"]
SCALES = [int(s) for s in os.environ.get("EVAL_ROUTES_SCALES", "4,2").split(",")]
PILLOW = "pillow==12.1.0"
MAX_SIDE = 256
PER_CLASS_FROM_DATASETS = 4
# A loss smaller than this is noise on a handful of images.
MARGIN_PSNR, MARGIN_SSIM2 = 0.1, 1.0

# scikit-image 0.24's sample images, by what they show (not by what Smart
# mode says). Grey textures are photographs.
SKIMAGE = {
    "photo": ["chelsea", "coffee", "rocket", "motorcycle_left", "brick", "grass"],
    "face": ["astronaut"],
    "text": ["page", "text"],
    "illustration": ["logo"],
}
# Test inputs of restoration projects are degraded on purpose (blurred, compressed
# faces): no use as a reference.
DEGRADED_ON_PURPOSE = re.compile(r"^(codeformer|gfpgan|realesrgan)_")
# Set5 by content: two of the five are close-up faces.
SET5 = {"baby": "face", "head": "face", "woman": "face", "bird": "photo", "butterfly": "photo"}


def import_pillow():
    try:
        from PIL import Image
    except ImportError:
        lib = CACHE / "pylib"
        if not (lib / "PIL").is_dir():
            print(f"installing {PILLOW} into {lib} (pip)", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--target", str(lib), PILLOW],
                check=True,
            )
        sys.path.insert(0, str(lib))
        from PIL import Image
    return Image


Image = import_pillow()


def routes_table():
    """config/routes.yaml as {route: {scale: {level: model}}} (its flow-mapping rows)."""
    table, route = {}, None
    for line in (ROOT / "config/routes.yaml").read_text().splitlines():
        if m := re.match(r"^([a-z-]+):\s*$", line):
            route = table.setdefault(m[1], {})
        elif route is not None and (m := re.match(r"^\s+(\d):\s*\{(.*)\}", line)):
            route[int(m[1])] = dict(
                (k.strip(), v.strip()) for k, v in (kv.split(":") for kv in m[2].split(","))
            )
    return table


def model_kinds():
    kinds, name = {}, None
    for line in (ROOT / "models/catalog.yaml").read_text().splitlines():
        if m := re.match(r"^  ([A-Za-z0-9_.-]+):\s*$", line):
            name = m[1]
        elif name and (m := re.match(r"^    kind:\s*(\w+)", line)):
            kinds[name] = m[1]
    return kinds


def centre_square(img):
    side = min(img.width, img.height, MAX_SIDE) // 4 * 4
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def hr_sources(samples):
    """[(id, class, path)] and lines saying where they came from."""
    items, notes, seen = [], [], set()

    def add(ident, cls, path):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            items.append((ident, cls, Path(path)))

    for cls, names in SKIMAGE.items():
        for name in names:
            path = next((p for p in sorted(samples.glob(name + ".*"))), None)
            if path:
                add(f"skimage-{name}", cls, path)
    notes.append(f"scikit-image samples: {len(items)} from {samples}")

    datasets, dev = ROOT / "scripts/datasets.py", ROOT.parent / "shared/data/classify"
    by_class, n0 = defaultdict(list), len(items)
    if datasets.exists() and os.environ.get("EVAL_ROUTES_DATASETS") != "skip":
        try:
            out = subprocess.run([sys.executable, str(datasets), "list"], capture_output=True,
                                 text=True, timeout=300, cwd=ROOT, check=True).stdout
            for r in (r.split("\t") for r in out.splitlines()):
                if len(r) >= 2 and r[1] in CLASSES:
                    by_class[r[1]].append(Path(r[0]) if Path(r[0]).is_absolute() else ROOT / r[0])
            source = "scripts/datasets.py list"
        except Exception as e:
            notes.append(f"scripts/datasets.py list: failed ({str(e)[:120]})")
    if not by_class and dev.is_dir():
        for cls in CLASSES:
            by_class[cls] = sorted((dev / cls).glob("*.png"))
        source = f"the dev set {dev} (instead of scripts/datasets.py)"
    if not by_class:
        notes.append("scripts/datasets.py and ../shared/data/classify: skipped (absent)")
    listed = bool(by_class)
    for cls in CLASSES:
        big, small = [], []
        for p in sorted(set(p for p in by_class[cls] if p.is_file())):
            if DEGRADED_ON_PURPOSE.match(p.stem):
                continue
            try:
                with Image.open(p) as im:
                    side = min(im.size)
            except Exception:
                continue
            (big if side >= MAX_SIDE else small if side >= 128 else []).append(p)
        pool = big if len(big) >= PER_CLASS_FROM_DATASETS else big + small
        k = min(PER_CLASS_FROM_DATASETS, len(pool))
        for i in range(k):  # evenly spaced through the sorted list: several sources
            p = pool[i * len(pool) // k]
            add(f"ds-{p.stem}", cls, p)
    if listed:
        notes.append(f"{source}: {len(items) - n0} images ({PER_CLASS_FROM_DATASETS} a class "
                     f"at most, evenly spaced by path, short side ≥ {MAX_SIDE} preferred; CodeFormer, "
                     f"GFPGAN and Real-ESRGAN test inputs left out: degraded on purpose)")

    set5 = ROOT.parent / "shared/data/sr/Set5"
    if set5.is_dir():
        n0 = len(items)
        for name, cls in SET5.items():
            if (set5 / f"{name}.png").exists():
                add(f"set5-{name}", cls, set5 / f"{name}.png")
        notes.append(f"Set5 ({set5}): {len(items) - n0} images (baby, head, woman as faces)")
    else:
        notes.append("Set5 (../shared/data/sr): skipped (absent)")
    return items, notes


def prepare(items):
    """HR crops and degraded inputs: {(id, deg, factor): (lr_path, hr_path)}."""
    pairs = {}
    for ident, _, src in items:
        hr = WORK / "hr" / f"{ident}.png"
        if not hr.exists():
            hr.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src) as im:
                im = im.convert("RGBA")
                flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
                flat.alpha_composite(im)  # transparency on white, as a page shows it
                centre_square(flat.convert("RGB")).save(hr)
        with Image.open(hr) as im:
            im.load()
            for factor in SCALES:
                small = im.resize((im.width // factor, im.height // factor), Image.BICUBIC)
                for deg in DEGRADATIONS:
                    ext = "jpg" if deg == "jpeg75" else "png"
                    lr = WORK / "lr" / f"{deg}-x{factor}" / f"{ident}.{ext}"
                    if not lr.exists():
                        lr.parent.mkdir(parents=True, exist_ok=True)
                        if deg == "jpeg75":
                            small.save(lr, quality=75)
                        else:
                            small.save(lr)
                    pairs[(ident, deg, factor)] = (lr, hr)
    return pairs


def run_process(bin_, model, level, lrs, side, dest):
    """Upscales lrs (all side/scale square) to side x side into dest/<id>.png; reports by id."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        cmd = [bin_, "process", "--format", "png", "-o", tmp, "--json",
               "--width", str(side), "--height", str(side)]
        cmd += ["--model", model] if model else ["--level", level]
        res = subprocess.run(cmd + [str(p) for p in lrs], capture_output=True, text=True)
        reports = {}
        for line in res.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                reports[Path(r["input"]).stem] = r
        dest.mkdir(parents=True, exist_ok=True)
        for p in lrs:
            r = reports.get(p.stem)
            out = Path(tmp) / f"{p.stem}.png"
            if r is None or not out.exists():
                print(f"  {model or 'smart ' + level} failed on {p}: {res.stderr.strip()[-400:]}",
                      file=sys.stderr)
                continue
            if tuple(r["output_size"]) != (side, side):
                print(f"  {p}: output {r['output_size']}, HR is {side}", file=sys.stderr)
                continue
            shutil.move(out, dest / f"{p.stem}.png")
            (dest / f"{p.stem}.json").write_text(json.dumps(r))
        return reports


def fingerprint(bin_):
    st = Path(bin_).stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    h.update((ROOT / "config/routes.yaml").read_bytes())
    return h.hexdigest()[:16]


def upscale_all(bin_, items, pairs, models_by_factor):
    """Runs every (model | smart level) missing from the cache, batched per model."""
    fp = fingerprint(bin_)
    for factor in SCALES:
        for deg in DEGRADATIONS:
            jobs = [(m, None) for m in models_by_factor[factor]] + [(None, lv) for lv in LEVELS]
            for model, level in jobs:
                name = model or f"smart-{level}"
                dest = WORK / "out" / f"{deg}-x{factor}" / name
                if model is None:
                    stamp = dest / ".fingerprint"
                    if dest.exists() and (not stamp.exists() or stamp.read_text() != fp):
                        shutil.rmtree(dest)
                    dest.mkdir(parents=True, exist_ok=True)
                    stamp.write_text(fp)
                todo = defaultdict(list)
                for ident, _, _ in items:
                    lr, hr = pairs[(ident, deg, factor)]
                    if not (dest / f"{ident}.png").exists():
                        with Image.open(hr) as im:
                            todo[im.width].append(lr)
                if not todo:
                    continue
                t0 = time.time()
                n = sum(len(v) for v in todo.values())
                for side, lrs in sorted(todo.items()):
                    run_process(bin_, model, level, lrs, side, dest)
                print(f"  {deg} x{factor} {name}: {n} images in {time.time() - t0:.1f} s", flush=True)


def bicubic_baselines(items, pairs):
    for (ident, deg, factor), (lr, hr) in pairs.items():
        out = WORK / "out" / f"{deg}-x{factor}" / "bicubic" / f"{ident}.png"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(lr) as a, Image.open(hr) as b:
                a.convert("RGB").resize(b.size, Image.BICUBIC).save(out)


def score_all(score_bin, jobs):
    """jobs: [(key, hr, out, shave)] -> {key: (psnr_y, ssimulacra2)}."""
    results = {}
    by_shave = defaultdict(list)
    for key, hr, out, shave in jobs:
        by_shave[shave].append((key, hr, out))
    for shave, js in by_shave.items():
        args = [str(x) for _, hr, out in js for x in (hr, out)]
        res = subprocess.run([score_bin, "--shave", str(shave)] + args, capture_output=True,
                             text=True)
        for (key, _, _), line in zip(js, res.stdout.splitlines()):
            r = json.loads(line)
            if "error" in r:
                print(f"  score: {r['error']}", file=sys.stderr)
            else:
                results[key] = (r["psnr_y"], r["ssimulacra2"])
    return results


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def fmt(s):
    return f"{s[0]:.2f} / {s[1]:.1f}" if s else "n/a"


def report(items, scores, routes, kinds, models_by_factor):
    """The markdown: per class and scale, a summary by level and the full model table."""
    lines, findings = [], []
    out_dir = WORK / "out"
    for factor in SCALES:
        for cls in CLASSES:
            ids = [i for i, c, _ in items if c == cls]
            if not ids:
                continue
            row = routes.get(cls, {}).get(factor, {})
            jrow = routes.get(f"jpeg-damaged-{cls}", {}).get(factor, {})
            fidelity = [m for m in models_by_factor[factor] if m.startswith("span")]
            candidates = sorted(set(row.values()) | set(jrow.values()) | set(fidelity))

            def agg(deg, name):
                got = [scores[(i, deg, factor, name)] for i in ids if (i, deg, factor, name) in scores]
                if len(got) < len(ids):
                    return None
                return (mean([g[0] for g in got]), mean([g[1] for g in got]))

            def upscale_ms(deg, name):
                ms = []
                for i in ids:
                    p = out_dir / f"{deg}-x{factor}" / name / f"{i}.json"
                    if p.exists():
                        ms += [t for s, t in json.loads(p.read_text())["stage_ms"] if s == "upscale"]
                return mean(ms)

            lines += [f"### {cls}, {factor}x ({len(ids)} images: {', '.join(ids)})", ""]
            lines += ["PSNR-Y dB / SSIMULACRA2, mean over the images. Table: the model "
                      "routes.yaml names for the level (clean row; JPEG row after `|`). "
                      "Best: the best of the route's candidates.", ""]
            lines += ["| input | level | table | table's score | Smart's pick (images; its classes) | Smart's score "
                      "| best by PSNR-Y | best by SSIMULACRA2 |", "|---|---|---|---|---|---|---|---|"]
            for deg in DEGRADATIONS:
                per_model = {m: agg(deg, m) for m in candidates}
                per_model = {m: s for m, s in per_model.items() if s}
                if not per_model:
                    continue
                best_p = max(per_model, key=lambda m: per_model[m][0])
                best_s = max(per_model, key=lambda m: per_model[m][1])
                for level in LEVELS:
                    table = row.get(level)
                    picks, classed = Counter(), Counter()
                    for i in ids:
                        p = out_dir / f"{deg}-x{factor}" / f"smart-{level}" / f"{i}.json"
                        if p.exists():
                            r = json.loads(p.read_text())
                            # "realesrgan-x4plus (1 faces, ...: spanx4_ch48)": the model, protected
                            picks[r["upscaler"].split(" (")[0]] += 1
                            classed[(r["class"] or "none") + (" jpeg" if r["jpeg_damaged"] else "")] += 1
                    pick = ", ".join(f"{m} ({n})" for m, n in picks.most_common())
                    pick += "; classed " + ", ".join(f"{c} {n}" for c, n in classed.most_common())
                    t_label = table + (f" \\| {jrow[level]}" if jrow.get(level) and deg == "jpeg75" else "")
                    ts = per_model.get(table)
                    lines.append(
                        f"| {deg} | {level} | {t_label} | {fmt(ts)} | {pick} | "
                        f"{fmt(agg(deg, f'smart-{level}'))} | {best_p} {per_model[best_p][0]:.2f} | "
                        f"{best_s} {per_model[best_s][1]:.1f} |")
                    if ts:
                        lost = []
                        if per_model[best_p][0] - ts[0] > MARGIN_PSNR:
                            lost.append(f"PSNR-Y: {best_p} {per_model[best_p][0]:.2f} vs {ts[0]:.2f} dB")
                        if per_model[best_s][1] - ts[1] > MARGIN_SSIM2:
                            lost.append(f"SSIMULACRA2: {best_s} {per_model[best_s][1]:.1f} vs {ts[1]:.1f}")
                        if lost:
                            findings.append(f"{cls} {factor}x {deg} {level}: table {table} "
                                            f"({kinds.get(table, '?')}) loses on " + "; ".join(lost))
            lines.append("")
            lines += ["| model | kind | role | " + " | ".join(f"{d} PSNR-Y / SSIM2" for d in DEGRADATIONS)
                      + " | upscale ms |", "|---|---|---|" + "---|" * len(DEGRADATIONS) + "---|"]
            names = models_by_factor[factor] + ["bicubic"]
            for m in sorted(names, key=lambda m: -(agg("bicubic", m) or (-1e9, 0))[0]):
                roles = [lv for lv in LEVELS if row.get(lv) == m]
                roles += [f"jpeg {lv}" for lv in LEVELS if jrow.get(lv) == m]
                role = ", ".join(roles) or ("fidelity" if m in fidelity else "")
                ms = upscale_ms("bicubic", m) if m != "bicubic" else float("nan")
                cells = " | ".join(fmt(agg(d, m)) for d in DEGRADATIONS)
                kind = kinds.get(m, "Pillow" if m == "bicubic" else "?")
                lines.append(f"| {m} | {kind} | {role} | {cells} | "
                             + (f"{ms:.0f} |" if ms == ms else " |"))
            lines.append("")
    return lines, findings


def main():
    t_start = time.time()
    bin_ = str(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target/release/upscaled").resolve())
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"binary {bin_}; cache {WORK}")

    if not (CACHE / "samples/astronaut.png").exists():
        subprocess.run([bin_, "fetch-samples"], check=True)
    items, notes = hr_sources(CACHE / "samples")
    for n in notes:
        print(n)
    print("per class: " + ", ".join(f"{c} {sum(1 for _, k, _ in items if k == c)}" for c in CLASSES))
    print("degradation: Pillow BICUBIC (antialiased) ÷4 (÷2 for 2x); jpeg75: the same, then "
          "Pillow JPEG quality 75 (4:2:0)")

    routes, kinds = routes_table(), model_kinds()
    models_by_factor = {}
    for factor in SCALES:
        names = {m for r in routes.values() for m in r.get(factor, {}).values()}
        names |= {f"spanx{factor}_ch48", f"spanx{factor}_ch52"}
        models_by_factor[factor] = sorted(names)

    t0 = time.time()
    pairs = prepare(items)
    bicubic_baselines(items, pairs)
    print(f"inputs ready in {time.time() - t0:.1f} s; upscaling (cached in {WORK / 'out'})", flush=True)
    t0 = time.time()
    upscale_all(bin_, items, pairs, models_by_factor)
    print(f"upscaling: {time.time() - t0:.1f} s", flush=True)

    # The scorer, built with the features the binary was built with (no second build of
    # the lib); EVAL_ROUTES_SCORE names a scorer built elsewhere.
    score_bin = os.environ.get("EVAL_ROUTES_SCORE")
    if not score_bin:
        features = [] if subprocess.run(["pkg-config", "--exists", "libheif"]).returncode == 0 \
            else ["--no-default-features"]
        subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "score"] + features,
                       cwd=ROOT, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
        score_bin = str((target if target.is_absolute() else ROOT / target) / "release/examples/score")
    t0 = time.time()
    jobs = []
    for (ident, deg, factor), (_, hr) in pairs.items():
        for name in models_by_factor[factor] + ["bicubic"] + [f"smart-{lv}" for lv in LEVELS]:
            out = WORK / "out" / f"{deg}-x{factor}" / name / f"{ident}.png"
            if out.exists():
                jobs.append(((ident, deg, factor, name), hr, out, factor))
    scores = score_all(score_bin, jobs)
    print(f"scoring {len(jobs)} outputs: {time.time() - t0:.1f} s")

    lines, findings = report(items, scores, routes, kinds, models_by_factor)
    head = ["# Route evaluation (`make eval-routes`)", "", *[f"- {n}" for n in notes],
            f"- shave: `scale` pixels at every border before scoring; generative models "
            f"are expected to lose PSNR-Y", ""]
    tail = ["## Where the table's choice loses (margin > "
            f"{MARGIN_PSNR} dB PSNR-Y or {MARGIN_SSIM2} SSIMULACRA2)", ""]
    tail += [f"- {f}" for f in findings] or ["- nowhere"]
    text = "\n".join(head + lines + tail) + "\n"
    print()
    print(text)
    (CACHE / "eval-routes.md").write_text(text)
    print(f"written to {CACHE / 'eval-routes.md'}; total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
