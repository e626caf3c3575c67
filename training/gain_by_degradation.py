"""Where a CFRNet model's PSNR gain comes from: the evaluation set degraded as usual, then again
with one step of the degradation chain switched off at a time, and the model's gain at k cycles
over its input for each. A step whose removal shrinks the gain is one the model undoes well.

    python -m training.gain_by_degradation models/cfrnet_int8.onnx [--k 2] [--limit 208] [--seed 0]

PSNR only (peak 255, full 256² crop, 8-bit output, as training.evaluate_cfrnet): it takes about a
minute per row for the INT8 model on one core. A face whose input is left undamaged when a step is
off (infinite PSNR) is left out of that row; the row says how many faces it used.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from pathlib import Path

import numpy as np

from app.core.metrics import psnr
from app.core.restorer import Restorer
from training import degrade
from training.evaluate_cfrnet import val_faces, to_uint8

# Each row's switch: the RANGES entries it sets to probability 0.
WITHOUT = {
    "as evaluated": {},
    "without grey / sepia": {"tone": ("p_grey", "p_sepia")},
    "without fading": {"fade": ("p",)},
    "without down-sampling": {"downsample": ("p",)},
    "without blur": {"blur": ("p",)},
    "without noise and grain": {"gaussian_noise": ("p",), "poisson_noise": ("p",), "film_grain": ("p",)},
    "without JPEG": {"jpeg": ("p",)},
    "without scratches and dust": {"scratches_dust": ("p",)},
}


@contextlib.contextmanager
def switched_off(steps: dict[str, tuple[str, ...]]):
    """``degrade.RANGES`` with the named probabilities at 0, restored afterwards."""
    saved = copy.deepcopy(degrade.RANGES)
    try:
        for step, keys in steps.items():
            for key in keys:
                degrade.RANGES[step][key] = 0.0
        yield
    finally:
        degrade.RANGES.clear()
        degrade.RANGES.update(saved)


def gain_row(restorer: Restorer, clean: list[np.ndarray], k: int, seed: int) -> tuple[float, float, int]:
    """Mean input PSNR, mean PSNR after k cycles, and the number of faces used."""
    inputs = degrade.degrade_eval_set(clean, seed)
    pairs = []
    for face, x in zip(clean, inputs):
        *_, out = restorer.restore(x, k)
        pairs.append((psnr(x, face, 255.0), psnr(to_uint8(out), face, 255.0)))
    p = np.array([pair for pair in pairs if all(np.isfinite(pair))]).reshape(-1, 2)
    if not len(p):
        return float("nan"), float("nan"), 0
    return float(p[:, 0].mean()), float(p[:, 1].mean()), len(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N val faces (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    faces, _ = val_faces()
    clean = list(faces[: args.limit] if args.limit else faces)
    restorer = Restorer(args.model, threads=args.threads)
    print(f"{args.model.name}, k = {args.k}, seed {args.seed}: PSNR (dB) of the input and of the output\n")
    print("| degradation | faces | input | k = %d | gain |" % args.k)
    print("| --- | --- | --- | --- | --- |")
    for label, steps in WITHOUT.items():
        with switched_off(steps):
            p_in, p_out, n = gain_row(restorer, clean, args.k, args.seed)
        print(f"| {label} | {n} | {p_in:.2f} | {p_out:.2f} | {p_out - p_in:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
