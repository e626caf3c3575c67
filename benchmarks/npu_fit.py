"""How the Ethos-N78 profile's unpublished parameters were chosen: a random local search over
plausible values, minimising the worst relative error over the SESR paper's figures (DESIGN §5).
Prints each improvement; copy the winner into app/core/npu/profiles/ethos-n78.json by hand (with
the judgement that it stays physically plausible) and check with benchmarks/npu_calibration.py.

    nice -n 10 python benchmarks/npu_fit.py --iterations 2500 --seed 5

The search that produced the committed profile used transpose_conv='zero_insertion_dram' and no
channel-fill model (parallel_out = parallel_in = 1): with a channel-fill model FSRCNN's 56→1
deconvolution became compute-bound, against the paper's "bandwidth-bound", and the worst error
stayed near 10 %; without it the worst error is 5.6 %.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.npu import load_profile, simulate  # noqa: E402
from app.core.npu.reference import fsrcnn, sesr  # noqa: E402

HD = (1, 1, 1080, 1920)
TILE = (300, 400)  # 4.8 × 3.6 = 17.28 tiles of 1080p

SPACE = {
    "utilisation": [0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.95],
    "dram_gb_per_s": [6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10, 10.5, 11, 11.5, 12, 13, 14],
    "sram_kib": [256, 384, 512, 640, 768, 1024, 1536],
    "parallel_out": [1],
    "parallel_in": [1],
    "layer_overhead_us": [1, 2, 3, 5, 8, 10, 15, 20],
    "inference_overhead_us": [0, 10, 25, 50, 75, 100],
    "transpose_conv": ["zero_insertion_dram"],
    "rearrange_in_dram": [False, True],
    "vector_gelem_per_s": [8, 12, 16, 24, 32, 48, 64],
}


def errors(profile) -> dict[str, tuple[float, float]]:
    models = (fsrcnn(), sesr(), sesr(scale=4))
    f = simulate(models[0], profile, HD)
    s = simulate(models[1], profile, HD)
    t = simulate(models[1], profile, HD, tile=TILE)
    s4 = simulate(models[2], profile, HD)
    t4 = simulate(models[2], profile, HD, tile=TILE)
    return {
        "FSRCNN x2 FPS": (f.fps, 6.0),
        "SESR-M5 x2 speed-up over FSRCNN": (f.per_inference_ms / s.per_inference_ms, 6.15),
        "SESR-M5 x2 tiled ms": (t.per_inference_ms, 21.77),
        "SESR-M5 x4 FPS": (s4.fps, 22.0),
        "SESR-M5 x4 tiled FPS": (t4.fps, 27.0),
    }


def worst(errs) -> float:
    return max(abs(a / b - 1) for a, b in errs.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    base = load_profile("ethos-n78")
    print(f"committed profile: worst error {100 * worst(errors(base)):.1f} %")
    cur = {k: rng.choice(v) for k, v in SPACE.items()}
    best = (float("inf"), None)
    for _ in range(args.iterations):
        cand = dict(cur)
        for _ in range(rng.choice([1, 1, 2, 3])):
            k = rng.choice(list(SPACE))
            cand[k] = rng.choice(SPACE[k])
        e = worst(errors(base.replace(**cand)))
        if e < best[0] or rng.random() < 0.02:  # occasionally accept a worse step
            cur = cand
            if e < best[0]:
                best = (e, cand)
                print(f"{100 * e:5.1f} %  {cand}", flush=True)
    for name, (got, target) in errors(base.replace(**best[1])).items():
        print(f"  {name:34s} {got:8.2f}  published {target:g}  {100 * (got / target - 1):+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
