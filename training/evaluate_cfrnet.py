"""CFRNet evaluation table (issue 10, "Evaluation"): PSNR, SSIM, LPIPS and NIQE of the degraded
input and of k = 1…6 cycles, and the fixed-point drift mean|f^(k+1)(x) − f^k(x)|, per model.

Faces: ``faces/val`` detected and aligned by the APP's detector and aligner (via
``training.face_pack``, cached in ~/.cache/cfr-studio/eval/), degraded by ``training.degrade``
with a fixed seed (face i uses its own stream, so ``--limit`` N evaluates the same first N inputs
that a full run does). Models run through ``app.core.restorer.Restorer`` (ONNX; no torch).

Metric conventions (DESIGN §8): on the full 256×256 RGB crop, each cycle's output quantised to
8 bits as the app would save it; PSNR (peak 255) and SSIM (Gaussian, mean over RGB) against the
clean aligned face; LPIPS-AlexNet (``data/metrics/lpips_alex.onnx``); NIQE (Y channel, lower is
better). Drift is measured on the float outputs, in [0, 1] units (the restorer's ``k='auto'``
threshold uses the same units). Figures are means over the faces.

    python -m training.evaluate_cfrnet --models cfrnet_fp32.onnx cfrnet_int8.onnx [NAME=baseline.onnx …]
        [--limit 50] [--threads 2] [--seed 0] [--json out.json] [--markdown out.md]

A model given as a bare file name is looked for in ``models/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.metrics import DEFAULT_LPIPS_MODEL, Lpips, niqe, periodic_grid, psnr, ssim

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CFR_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path(os.path.expanduser("~/.cache/cfr-studio/eval"))
MAX_K = 6
METRICS = ("psnr", "ssim", "lpips", "niqe", "grid")
# Targets from issue 10 ("What it must reach").
TARGET_PSNR_GAIN_K2 = 1.5  # dB over the input at k = 2
TARGET_LPIPS_DROP_K2 = 0.25  # fraction below the input at k = 2
TARGET_K6_VS_K2 = 0.5  # dB: k = 6 within this of k = 2
TARGET_INT8_VS_FP32 = 0.3  # dB


# ------------------------------------------------------------------------------------------ data


def val_faces(data_dir: Path = DEFAULT_DATA, cache: Path = CACHE, rebuild: bool = False) -> tuple[np.ndarray, list[str]]:
    """The aligned 256² val crops (N×256×256×3 uint8) and their source names, built once with the
    app's detector and aligner and cached."""
    from training.face_pack import build, load_pack

    pack = cache / "faces_val_aligned256.npy"
    if rebuild or not pack.is_file():
        print(f"aligning {data_dir / 'faces' / 'val'} with the app's detector → {pack}", file=sys.stderr, flush=True)
        build(Path(data_dir) / "faces" / "val", pack, method="aligned")
    arr, meta = load_pack(pack)
    if meta.get("method") != "aligned":
        raise RuntimeError(f"{pack}: not an aligned pack (method={meta.get('method')!r}); use --rebuild")
    return np.asarray(arr), list(meta.get("names", [str(i) for i in range(len(arr))]))


def degraded_inputs(clean: np.ndarray, seed: int) -> list[np.ndarray]:
    from training.degrade import degrade_eval_set

    return degrade_eval_set(list(clean), seed)


# --------------------------------------------------------------------------------------- metrics


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x, np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


@dataclass
class Scores:
    """Per-face figures: ``values[metric][k]`` lists one number per face (k = 0 is the input)."""

    name: str
    path: str = ""
    precision: str = ""
    values: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    drift: dict[int, list[float]] = field(default_factory=dict)  # k → mean|f^(k+1) − f^k| per face
    seconds_per_cycle: float = math.nan
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # face index → uint8 output for --sheet

    def add(self, metric: str, k: int, v: float) -> None:
        self.values.setdefault(metric, {}).setdefault(k, []).append(float(v))

    def mean(self, metric: str, k: int) -> float:
        vals = self.values.get(metric, {}).get(k, [])
        return float(np.mean(vals)) if vals else math.nan

    def mean_drift(self, k: int) -> float:
        vals = self.drift.get(k, [])
        return float(np.mean(vals)) if vals else math.nan


class ReferenceLpips:
    """LPIPS of many images against ONE reference, computing the reference's AlexNet features once.

    The shipped LPIPS graph is split (onnx.utils.Extractor) at the reference branch's normalised
    features: one part maps ``in0`` to those five tensors, the other takes them (batch 1, which
    the graph's Sub broadcasts) with ``in1`` to the distance. Same nodes and weights as
    app.core.metrics.Lpips — checked against it on construction — at 7 instead of 12 AlexNet
    passes for a face's input + 6 cycles.
    """

    FEATURES = ["/m/Div_output_0", "/m/Div_2_output_0", "/m/Div_4_output_0", "/m/Div_6_output_0", "/m/Div_8_output_0"]

    def __init__(self, lpips: Lpips, threads: int = 0, cache: Path = CACHE):
        import onnx
        from onnx.utils import Extractor

        from app.core.onnx_session import OnnxModel

        src = Path(lpips.model.path)
        stamp = f"{src.stat().st_size}_{int(src.stat().st_mtime)}"
        feat_path, dist_path = cache / f"lpips_ref_features_{stamp}.onnx", cache / f"lpips_ref_distance_{stamp}.onnx"
        if not (feat_path.is_file() and dist_path.is_file()):
            cache.mkdir(parents=True, exist_ok=True)
            ex = Extractor(onnx.shape_inference.infer_shapes(onnx.load(src)))
            for path, model in ((feat_path, ex.extract_model(["in0"], self.FEATURES)),
                                (dist_path, ex.extract_model(self.FEATURES + ["in1"], ["distance"]))):
                tmp = path.with_name(path.name + ".tmp")
                onnx.save(model, tmp)
                os.replace(tmp, path)
        self.features = OnnxModel(feat_path, threads=threads)
        self.dist = OnnxModel(dist_path, threads=threads)
        # The split must give the shipped model's numbers.
        rng = np.random.default_rng(0)
        a, b = rng.integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
        got, want = self.distance(a[0], b), lpips.distance(np.stack([a[0]] * 3), b)
        if not np.allclose(got, want, atol=1e-6):
            raise RuntimeError(f"split LPIPS disagrees with {src}: {got} vs {want}")

    @staticmethod
    def _nchw(u8: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((u8.astype(np.float32) / np.float32(127.5) - 1.0).transpose(0, 3, 1, 2))

    def distance(self, reference: np.ndarray, images: np.ndarray) -> np.ndarray:
        """(N,) distances of N uint8 RGB images (N×H×W×3) to one uint8 reference (H×W×3)."""
        feats = self.features.run({"in0": self._nchw(reference[None])})
        feeds = dict(zip(self.FEATURES, feats))
        feeds["in1"] = self._nchw(np.asarray(images))
        return self.dist.run(feeds)[0].astype(np.float64)


def score_images(images: list[np.ndarray], clean: np.ndarray, lpips: ReferenceLpips) -> list[dict[str, float]]:
    """PSNR/SSIM/LPIPS/NIQE/grid of each uint8 image against one clean face (LPIPS as one batch)."""
    lp = lpips.distance(clean, np.stack(images))
    return [
        {"psnr": psnr(im, clean, 255.0), "ssim": ssim(im, clean, 255.0), "lpips": float(d), "niqe": niqe(im),
         "grid": periodic_grid(im, clean)}
        for im, d in zip(images, np.atleast_1d(lp))
    ]


# ---------------------------------------------------------------------------------------- models


def resolve_model(spec: str) -> tuple[str, Path]:
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = Path(path)
    if not p.is_file() and (ROOT / "models" / p).is_file():
        p = ROOT / "models" / p
    return (name or p.stem), p


def evaluate_model(name: str, path: Path, inputs: list[np.ndarray], clean: np.ndarray, lpips: ReferenceLpips,
                   threads: int, progress=None, keep: tuple[set[int], int] = (set(), 2)) -> Scores:
    """Scores of one model on every face; ``keep`` = (face indices, k): those outputs are kept."""
    from app.core.restorer import Restorer

    restorer = Restorer(path, threads=threads)
    scores = Scores(name, str(path), str(getattr(restorer, "precision", "")))
    cycle_time = 0.0
    n_cycles = 0
    for i, (x, y) in enumerate(zip(inputs, clean)):
        t0 = time.perf_counter()
        # MAX_K + 1 cycles: the last one only measures the drift at k = MAX_K.
        cycles = []
        for out in restorer.restore(x, MAX_K + 1):
            cycles.append(np.asarray(out, np.float32))
        cycle_time += time.perf_counter() - t0
        n_cycles += len(cycles)
        if len(cycles) != MAX_K + 1:
            raise RuntimeError(f"{path}: restorer gave {len(cycles)} cycles, asked for {MAX_K + 1}")
        for k in range(1, MAX_K + 1):
            scores.drift.setdefault(k, []).append(float(np.mean(np.abs(cycles[k] - cycles[k - 1]))))
        outs = [to_uint8(c) for c in cycles[:MAX_K]]
        if i in keep[0]:
            scores.kept[i] = outs[keep[1] - 1]
        for k, s in enumerate(score_images(outs, y, lpips), start=1):
            for m in METRICS:
                scores.add(m, k, s[m])
        if progress:
            progress(i + 1, len(inputs), name)
    scores.seconds_per_cycle = cycle_time / max(n_cycles, 1)
    return scores


def input_scores(inputs: list[np.ndarray], clean: np.ndarray, lpips: ReferenceLpips) -> tuple[Scores, list[float]]:
    s = Scores("input")
    clean_niqe = []
    for x, y in zip(inputs, clean):
        for m, v in score_images([x], y, lpips)[0].items():
            s.add(m, 0, v)
        clean_niqe.append(niqe(y))
    return s, clean_niqe


# ---------------------------------------------------------------------------------------- report


def markdown(input_s: Scores, clean_niqe: list[float], models: list[Scores], n_faces: int, seed: int) -> str:
    lines = [
        f"CFRNet evaluation: {n_faces} faces of faces/val (aligned by the app), degraded with seed {seed}; "
        f"machine {platform.node()} ({platform.processor() or platform.machine()}).",
        "PSNR/SSIM/LPIPS against the clean aligned face on 256² RGB (8-bit outputs); NIQE on Y (lower is "
        "better; clean faces: {:.3f}); grid = RMS of the error's period-8 pattern in 8-bit levels "
        "(app.core.metrics.periodic_grid; a pixel-shuffle dot grid raises it); drift = mean|f^(k+1)(x) − f^k(x)| "
        "in [0, 1] units.".format(np.mean(clean_niqe)),
        "",
        "| Model | k | PSNR (dB) | SSIM | LPIPS | NIQE | grid | drift k→k+1 |",
        "|---|---|---|---|---|---|---|---|",
        "| input (degraded) | – | {:.2f} | {:.4f} | {:.4f} | {:.3f} | {:.2f} | – |".format(
            *(input_s.mean(m, 0) for m in METRICS)
        ),
    ]
    for s in models:
        for k in range(1, MAX_K + 1):
            lines.append(
                f"| {s.name} | {k} | {s.mean('psnr', k):.2f} | {s.mean('ssim', k):.4f} | "
                f"{s.mean('lpips', k):.4f} | {s.mean('niqe', k):.3f} | {s.mean('grid', k):.2f} | "
                f"{s.mean_drift(k):.5f} |"
            )
    lines += ["", "Checks against issue 10's targets:", ""]
    for s in models:
        lines += [f"- **{s.name}**" + (f" ({s.precision})" if s.precision else "") +
                  f", {1000 * s.seconds_per_cycle:.0f} ms per cycle (incl. Python overhead; not a benchmark):"]
        for text in checks(input_s, s):
            lines.append(f"  - {text}")
    for a, b in int8_pairs(models):
        diffs = [a.mean("psnr", k) - b.mean("psnr", k) for k in range(1, MAX_K + 1)]
        worst = max(abs(d) for d in diffs)
        lines.append(
            f"- INT8 {b.name} vs FP32 {a.name}: PSNR difference per k "
            + ", ".join(f"{d:+.2f}" for d in diffs)
            + f" dB; largest |Δ| {worst:.2f} dB ({'meets' if worst <= TARGET_INT8_VS_FP32 else 'MISSES'} ≤ {TARGET_INT8_VS_FP32} dB)"
        )
    return "\n".join(lines)


def _ok(flag: bool) -> str:
    return "meets" if flag else "MISSES"


def checks(inp: Scores, s: Scores) -> list[str]:
    p = {k: s.mean("psnr", k) for k in range(1, MAX_K + 1)}
    q = {k: s.mean("ssim", k) for k in range(1, MAX_K + 1)}
    lp = {k: s.mean("lpips", k) for k in range(1, MAX_K + 1)}
    d = [s.mean_drift(k) for k in range(1, MAX_K + 1)]
    gain = p[2] - inp.mean("psnr", 0)
    lp_in = inp.mean("lpips", 0)
    drop = 1 - lp[2] / lp_in if lp_in > 0 else math.nan
    shrinking = all(d[i + 1] <= d[i] for i in range(len(d) - 1)) and d[-1] < d[0]
    ratio = f"{d[-1] / d[0]:.2f}" if d[0] > 0 else "n/a: the first cycle changed nothing"
    return [
        f"PSNR gain at k=2: {gain:+.2f} dB ({_ok(gain >= TARGET_PSNR_GAIN_K2)} ≥ +{TARGET_PSNR_GAIN_K2})",
        f"LPIPS drop at k=2: {100 * drop:.1f} % ({_ok(drop >= TARGET_LPIPS_DROP_K2)} ≥ {100 * TARGET_LPIPS_DROP_K2:.0f} %)",
        f"k=2 vs k=1: PSNR {p[2] - p[1]:+.2f} dB, SSIM {q[2] - q[1]:+.4f} ({_ok(p[2] >= p[1] and q[2] >= q[1])} no worse)",
        f"LPIPS k=1→2→3: {lp[1]:.4f} → {lp[2]:.4f} → {lp[3]:.4f} ({_ok(lp[3] <= lp[2] <= lp[1] and lp[3] < lp[1])} improving to k=3)",
        f"drift k=1…6: " + ", ".join(f"{v:.4f}" for v in d) + f" ({_ok(shrinking)} shrinking; k6/k1 = {ratio})",
        f"PSNR k=6 − k=2: {p[6] - p[2]:+.2f} dB ({_ok(p[6] >= p[2] - TARGET_K6_VS_K2)} within {TARGET_K6_VS_K2} dB)",
    ]


def int8_pairs(models: list[Scores]) -> list[tuple[Scores, Scores]]:
    """(fp32, int8) pairs: same name once 'fp32'/'int8' is taken out."""
    pairs = []
    for a in models:
        for b in models:
            if "fp32" in a.name and "int8" in b.name and a.name.replace("fp32", "") == b.name.replace("int8", ""):
                pairs.append((a, b))
    return pairs


def to_json(input_s: Scores, clean_niqe: list[float], models: list[Scores], names: list[str], seed: int) -> dict:
    def summary(s: Scores, ks) -> dict:
        return {
            str(k): {
                **{m: s.mean(m, k) for m in METRICS},
                **{m + "_std": float(np.std(s.values[m][k])) for m in METRICS if k in s.values.get(m, {})},
                **({"drift": s.mean_drift(k)} if k in s.drift else {}),
            }
            for k in ks
        }

    return {
        "faces": names,
        "seed": seed,
        "machine": platform.node(),
        "clean_niqe": float(np.mean(clean_niqe)),
        "input": summary(input_s, [0]),
        "models": {
            s.name: {
                "path": s.path,
                "precision": s.precision,
                "seconds_per_cycle": s.seconds_per_cycle,
                "k": summary(s, range(1, MAX_K + 1)),
                "per_face": {m: {str(k): v for k, v in s.values[m].items()} for m in METRICS},
                "per_face_drift": {str(k): v for k, v in s.drift.items()},
            }
            for s in models
        },
    }


def face_sheet(inputs: list[np.ndarray], clean: np.ndarray, models: list[Scores], faces: list[int], k: int,
               zoom: int = 2) -> np.ndarray:
    """Rows of input | each model at k | clean for the given faces: the centre half of each
    aligned face (eyes, nose, mouth) enlarged ``zoom``× by pixel repetition, so that a period-4
    dot grid is visible; a header row names the columns."""
    import cv2

    def cell(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        c = img[h // 4: h - h // 4, w // 4: w - w // 4]
        return np.repeat(np.repeat(c, zoom, 0), zoom, 1)

    names = ["input"] + [f"{s.name} k={k}" for s in models] + ["clean"]
    rows = [np.concatenate([cell(inputs[i])] + [cell(s.kept[i]) for s in models] + [cell(clean[i])], 1)
            for i in faces]
    width = rows[0].shape[1] // len(names)
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for j, name in enumerate(names):
        cv2.putText(header, name[:28], (j * width + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header] + rows, 0)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, metavar="[NAME=]MODEL.onnx")
    ap.add_argument("--limit", type=int, default=None, help="first N val faces (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per session")
    ap.add_argument("--seed", type=int, default=0, help="degradation seed (keep 0 for comparable tables)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lpips-model", type=Path, default=DEFAULT_LPIPS_MODEL)
    ap.add_argument("--rebuild", action="store_true", help="re-align the val faces")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None,
                    help="PNG of input | each model | clean for --sheet-faces (centre crops at 2×): look before shipping")
    ap.add_argument("--sheet-faces", type=str, default="3,17,40", help="face indices for --sheet")
    ap.add_argument("--sheet-k", type=int, default=2, choices=range(1, MAX_K + 1), metavar="K")
    args = ap.parse_args(argv)

    specs = [resolve_model(m) for m in args.models]
    for name, p in specs:
        if not p.is_file():
            print(f"error: model {p} not found", file=sys.stderr)
            return 2
    t0 = time.time()
    clean, names = val_faces(args.data, rebuild=args.rebuild)
    if args.limit:
        clean, names = clean[: args.limit], names[: args.limit]
    clean = np.ascontiguousarray(clean)
    inputs = degraded_inputs(clean, args.seed)
    # The random chain can skip every step (p ≈ 1e-3 per face): such an input is the clean face
    # itself, its PSNR infinite, and it tests nothing. Drop it and say so.
    same = [i for i, (x, y) in enumerate(zip(inputs, clean)) if np.array_equal(x, y)]
    if same:
        print(f"excluded {len(same)} face(s) whose degraded input equals the clean face: "
              + ", ".join(names[i] for i in same), file=sys.stderr)
        keep = [i for i in range(len(clean)) if i not in set(same)]
        clean, inputs, names = clean[keep], [inputs[i] for i in keep], [names[i] for i in keep]
    lpips = ReferenceLpips(Lpips(args.lpips_model, threads=args.threads), threads=args.threads)

    def progress(done, total, what):
        if done % 10 == 0 or done == total:
            print(f"  {what}: {done}/{total} faces ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    sheet_faces = [int(v) for v in args.sheet_faces.split(",")] if args.sheet else []
    if any(not 0 <= i < len(clean) for i in sheet_faces):
        print(f"error: --sheet-faces must lie in 0..{len(clean) - 1}", file=sys.stderr)
        return 2
    input_s, clean_niqe = input_scores(inputs, clean, lpips)
    results = []
    for name, path in specs:
        results.append(evaluate_model(name, path, inputs, clean, lpips, args.threads, progress,
                                      keep=(set(sheet_faces), args.sheet_k)))
    if args.sheet:
        from app.core.io import save_image

        save_image(args.sheet, face_sheet(inputs, clean, results, sheet_faces, args.sheet_k), overwrite=True)
        print(f"face sheet: {args.sheet}", file=sys.stderr)
    if args.json:  # first, so that the figures survive whatever happens below
        payload = to_json(input_s, clean_niqe, results, names, args.seed)
        payload["excluded_unchanged"] = len(same)
        _write(args.json, json.dumps(payload, indent=1))
    text = markdown(input_s, clean_niqe, results, len(clean), args.seed)
    if same:
        text += f"\n\n({len(same)} face(s) left out: the degradation left them unchanged.)"
    print(text)
    print(f"\n({time.time() - t0:.0f} s in all)", file=sys.stderr)
    if args.markdown:
        _write(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
