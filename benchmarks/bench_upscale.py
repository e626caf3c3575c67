"""Whole-photo ×2 (or ×4) upscaling time on this CPU: INT8 vs FP32 SESR, through ``Upscaler``
(colour conversion, tiles, chroma filter and all), plus the network alone on the whole frame.

    nice -n 10 python benchmarks/bench_upscale.py                 # 1080p ×2, models/sesr_m5_x2_*
    python benchmarks/bench_upscale.py --scale 4 --size 960x540 --threads 1 --repeats 3

Prints median and spread (min–max) of ``--repeats`` runs after one warm-up, and the machine.
The dev machine is shared and noisy: compare the ratio of the two rows, not absolute times.
Target (DESIGN §7): 1080p ×2 INT8 under 1.5 s on the 2-core dev CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.io import load_image  # noqa: E402
from app.core.onnx_session import OnnxModel  # noqa: E402
from app.core.upscaler import Upscaler, default_upscaler_path  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402  (benchmarks/, the script's folder)

DEFAULT_PHOTO = ROOT / "tests" / "data" / "sr_b100_img003_crop.png"


def machine() -> str:
    cpu, load = cpu_model(), load_average()
    import onnxruntime

    return (f"{cpu}, {os.cpu_count()} logical CPUs, load avg {load:.2f}, "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}")


def frame(width: int, height: int, photo: Path) -> np.ndarray:
    """A real photo stretched to the frame size (content matters little for a conv net's speed)."""
    import cv2

    rgb = load_image(photo).rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds (all threads) of each run. On a shared machine the CPU
    time is the steadier figure: wall ≈ CPU / threads when the cores are free."""
    fn()  # warm-up: first-run allocations and kernel selection
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def row(name: str, times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    return (f"| {name} | {statistics.median(wall):.3f} | {min(wall):.3f}–{max(wall):.3f} | "
            f"{statistics.median(cpu):.3f} | {len(wall)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--size", default="1920x1080", help="input WxH (default 1920x1080)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    ap.add_argument("--tile", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fp32", type=Path, default=None)
    ap.add_argument("--int8", type=Path, default=None)
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    args = ap.parse_args(argv)

    w, h = (int(v) for v in args.size.lower().split("x"))
    img = frame(w, h, args.photo)
    paths = {
        "INT8": args.int8 or default_upscaler_path(args.scale, precision="int8"),
        "FP32": args.fp32 or default_upscaler_path(args.scale, precision="fp32"),
    }
    print(f"# upscale ×{args.scale}, {w}×{h} → {w * args.scale}×{h * args.scale}, "
          f"{args.threads} threads")
    print(f"# {machine()}")
    print("| what | median wall s | min–max wall s | median CPU s | runs |\n|---|---|---|---|---|")
    medians: dict[str, float] = {}
    for prec, path in paths.items():
        y = np.ascontiguousarray(
            (img.astype(np.float32) @ np.array([65.481, 128.553, 24.966], np.float32) / 255 + 16) / 255
        )[None, None]
        model = OnnxModel(path, threads=args.threads)
        t = timed(lambda: model.run1(y), args.repeats)
        print(row(f"{prec} network only, whole frame ({path.name})", t), flush=True)
        for tile in args.tile:
            up = Upscaler(path, threads=args.threads, tile=tile)
            t = timed(lambda: up.upscale(img), args.repeats)
            medians[f"{prec} {tile}"] = statistics.median(t[0])
            print(row(f"{prec} Upscaler.upscale, tile {tile}", t), flush=True)
    for tile in args.tile:
        f, q = medians.get(f"FP32 {tile}"), medians.get(f"INT8 {tile}")
        if f and q:
            print(f"# tile {tile}: INT8 is {f / q:.2f}× FP32 speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
