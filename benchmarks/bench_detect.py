"""Face detection: faces found per group photo, and the time per frame (incl. 12 MP). Prints
tables; never part of the test run.

    nice -n 10 python benchmarks/bench_detect.py              # both tables
    python benchmarks/bench_detect.py --runs 5 --min-face 24   # force the 24 px floor on 12 MP

(a) Faces found in the group photos of data/photos/real-old (and how many came from face mesh),
    with the detect time of each (wall and process CPU; MediaPipe runs on one thread here).
(b) Detect time for 12 MP frames: three real group photos upscaled (bicubic, aspect kept) to
    12 megapixels, median and spread over N runs after a warm-up. The machine is shared: CPU time
    is the steadier figure.
(c) One thread against two (FaceDetector(threads=1|2), interleaved runs) on the same 12 MP frames,
    next to a reference job that is perfectly parallel (two threads blurring images, no GIL): where
    the reference gains nothing from a second thread, no core was free (a loaded machine) and the
    detector's wall ratio says nothing about an idle one. The CPU per thread shows the helper's
    share of the work.

    python benchmarks/bench_detect.py --parts c --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.faces import FaceDetector  # noqa: E402
from machine_info import cpu_model, load_average  # noqa: E402  (benchmarks/, the script's folder)

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
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, load average {load_average():.1f}"


def timed(det: FaceDetector, rgb: np.ndarray):
    w0, c0 = time.perf_counter(), time.process_time()
    faces = det.detect(rgb)
    return faces, time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--min-face", type=int, default=None, help="detector floor (default: its own rule)")
    ap.add_argument("--threads", type=int, default=None, help="detector threads (default: its own rule)")
    ap.add_argument("--parts", default="ab")
    args = ap.parse_args()
    photos = args.data / "photos" / "real-old"
    det = FaceDetector(min_face=args.min_face, threads=args.threads)
    print(f"machine: {machine()}")
    print(f"detector: min_face={'auto' if args.min_face is None else args.min_face}, "
          f"mesh_min_face={det.mesh_min_face}, threads={det.threads}")
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
        for name, big in frames_12mp(photos):
            bh, bw = big.shape[:2]
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
    if "c" in args.parts:
        part_c(photos, args.runs, args.min_face)
    det.close()
    return 0


def frames_12mp(photos: Path):
    """(name, 12 MP frame) for the first three group photos, upscaled with the aspect kept."""
    for name in GROUPS[:3]:
        path = photos / name
        if not path.is_file():
            continue
        rgb = np.array(Image.open(path).convert("RGB"))
        f = (12e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
        yield name, cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_CUBIC)


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native id (Linux)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def part_c(photos: Path, runs: int, min_face: int | None) -> None:
    blur_src = np.random.default_rng(0).random((700, 700), dtype=np.float32)

    def blur(n: int = 40) -> None:
        for _ in range(n):
            cv2.GaussianBlur(blur_src, (0, 0), 3)

    def reference(parallel: bool) -> None:  # the same work on one thread or split over two
        if not parallel:
            blur(80)
            return
        t = threading.Thread(target=blur)
        t.start()
        blur()
        t.join()

    one = FaceDetector(min_face=min_face, threads=1)
    known = set(thread_cpu())
    two = FaceDetector(min_face=min_face, threads=2)
    calling_graphs = set(thread_cpu()) - known  # the graphs' own threads (2 per MediaPipe graph)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the reference's parallelism is ours, not OpenCV's
    try:
        ref = {False: [], True: []}
        for r in range(runs + 1):
            for parallel in (False, True) if r % 2 else (True, False):
                t0 = time.perf_counter()
                reference(parallel)
                if r:
                    ref[parallel].append(time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(previous)
    gain = statistics.median(ref[False]) / statistics.median(ref[True])
    print(f"\n(c) one detector thread against two, {runs} interleaved runs each after a warm-up; "
          f"reference (perfectly parallel) speed-up from a second thread: {gain:.2f}× "
          f"({'a core was free' if gain > 1.3 else 'NO free core: the wall ratio below says nothing about an idle machine'})")
    print("With 2 threads the CPU is split by thread into the calling thread's chain (it, and its graphs'\n"
          "threads) and the rest (the helper thread, its graphs, OpenCV's pool): who did the work. Both take\n"
          "from one queue, so the split follows how the scheduler served the two threads: on a loaded\n"
          "machine it is lopsided and says nothing about an idle one; with 2 free cores it would be even.")
    print("| source (upscaled) | faces 1 thr / 2 thr | wall ms 1 thr | wall ms 2 thr | wall ratio | cpu ms 1 thr "
          "| cpu ms 2 thr | 2 thr cpu ms: calling chain / rest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    me = threading.get_native_id()
    for name, big in frames_12mp(photos):
        timed(one, big)
        timed(two, big)
        chains = [0.0, 0.0]
        res = {1: ([], [], 0), 2: ([], [], 0)}
        for r in range(runs):
            for n in (1, 2) if r % 2 else (2, 1):
                before = thread_cpu()
                faces, wall, cpu = timed(one if n == 1 else two, big)
                if n == 2:
                    for tid, t in thread_cpu().items():
                        chains[0 if tid == me or tid in calling_graphs else 1] += (t - before.get(tid, 0.0)) / runs
                res[n][0].append(wall * 1e3)
                res[n][1].append(cpu * 1e3)
                res[n] = (res[n][0], res[n][1], len(faces))
        w1, w2 = statistics.median(res[1][0]), statistics.median(res[2][0])
        print(f"| {name} | {res[1][2]} / {res[2][2]} | {w1:.0f} | {w2:.0f} | {w2 / w1:.2f} | "
              f"{statistics.median(res[1][1]):.0f} | {statistics.median(res[2][1]):.0f} | "
              f"{chains[0] * 1e3:.0f} / {chains[1] * 1e3:.0f} |")
    one.close()
    two.close()


if __name__ == "__main__":
    raise SystemExit(main())
