"""Face detection: faces found per group photo, and the time per frame (incl. 12 MP). Prints
tables; never part of the test run.

    nice -n 10 python benchmarks/bench_detect.py              # both tables
    python benchmarks/bench_detect.py --runs 5 --min-face 24   # force the 24 px floor on 12 MP

(a) Faces found in the group photos of data/photos/real-old (and how many came from face mesh),
    with the detect time of each (wall and process CPU; MediaPipe runs on one thread here).
(b) Detect time for 12 MP frames: three real group photos upscaled (bicubic, aspect kept) to
    12 megapixels, median and spread over N runs after a warm-up. The machine is shared: CPU time
    is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.faces import FaceDetector  # noqa: E402

DATA = Path(os.environ.get("CFR_DATA", ROOT.parent / "shared" / "data"))
GROUPS = [
    "psfrgan_solvay_conference_1927.jpg",
    "deoldify_ServantsBessboroughHouse1908Ireland.jpg",
    "deoldify_GreekImmigrants1905.jpg",
    "deoldify_EastEndLondonStreetKids1901.jpg",
    "deoldify_CorkKids1910.jpg",
    "deoldify_skycrapper_lunch.jpg",
    "deoldify_brooklyn_girls_1940s.jpg",
    "deoldify_TheatreGroupBombay1875.jpg",
    "deoldify_FatMenClub.jpg",
    "deoldify_1910Racket.jpg",
    "deoldify_school_kids.jpg",
    "deoldify_royal_family.jpg",
]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} logical CPUs, load average {load:.1f}"


def timed(det: FaceDetector, rgb: np.ndarray):
    w0, c0 = time.perf_counter(), time.process_time()
    faces = det.detect(rgb)
    return faces, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--min-face", type=int, default=None, help="detector floor (default: its own rule)")
    ap.add_argument("--parts", default="ab")
    args = ap.parse_args()
    photos = args.data / "photos" / "real-old"
    det = FaceDetector(min_face=args.min_face)
    print(f"machine: {machine()}")
    print(f"detector: min_face={'auto' if args.min_face is None else args.min_face}, mesh_min_face={det.mesh_min_face}")
    det.detect(np.zeros((256, 256, 3), np.uint8))  # warm-up: MediaPipe builds its graphs lazily

    if "a" in args.parts:
        print("\n(a) group photos")
        print(f"| photo | size | faces | from mesh | smallest px | wall ms | cpu ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in GROUPS:
            path = photos / name
            if not path.is_file():
                continue
            rgb = np.array(Image.open(path))
            faces, wall, cpu = timed(det, rgb)
            small = min((f.width for f in faces), default=0)
            mesh = sum(f.source == "mesh" for f in faces)
            print(f"| {name} | {rgb.shape[1]}×{rgb.shape[0]} | {len(faces)} | {mesh} | {small:.0f} | "
                  f"{wall * 1e3:.0f} | {cpu * 1e3:.0f} |")

    if "b" in args.parts:
        print(f"\n(b) 12 MP frames, {args.runs} runs each after a warm-up")
        print("| source (upscaled) | size | min face px | faces | wall ms median (min–max) | cpu ms median (min–max) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in GROUPS[:3]:
            path = photos / name
            if not path.is_file():
                continue
            rgb = np.array(Image.open(path).convert("RGB"))
            f = (12e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
            bw, bh = round(rgb.shape[1] * f), round(rgb.shape[0] * f)
            big = cv2.resize(rgb, (bw, bh), interpolation=cv2.INTER_CUBIC)
            timed(det, big)
            walls, cpus, n = [], [], 0
            for _ in range(args.runs):
                faces, wall, cpu = timed(det, big)
                walls.append(wall * 1e3)
                cpus.append(cpu * 1e3)
                n = len(faces)
            print(f"| {name} | {bw}×{bh} | {det.effective_min_face(bw, bh)} | {n} | {statistics.median(walls):.0f} "
                  f"({min(walls):.0f}–{max(walls):.0f}) | {statistics.median(cpus):.0f} "
                  f"({min(cpus):.0f}–{max(cpus):.0f}) |")
    det.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
