"""Export a trained SESR checkpoint to ``models/``: collapse, FP32 ONNX, static-QDQ INT8 ONNX, and
evaluate both (and bicubic) on Set5 / Set14 / B100 by the shared protocol (training/sr_eval.py).

    nice -n 10 python -m training.export_sesr --variant M5 --scale 2
      → models/sesr_m5_x2_fp32.onnx, models/sesr_m5_x2_int8.onnx, a markdown table on stdout,
        every figure in ~/.cache/cfr-studio/sesr/eval_sesr_m5_x2.json

INT8 calibration uses LR luma crops of the *training* images (never the test sets). Two
calibration methods (min-max, percentile) and three extents of quantisation are tried, judged by
the output's distance to FP32 on held-back training images (see MAX_TRAIN_GAP below).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from training import sr_eval
from training.onnx_export import compare_with_torch, export_onnx, quantize_int8
from training.sesr import VARIANTS, sesr_macs_per_pixel
from training.sr_data import CACHE_DIR, DEFAULT_DATA, prepare_pairs
from training.train_sesr import checkpoint_path, load_model

ROOT = Path(__file__).resolve().parents[1]
MAX_TRAIN_GAP = 0.06  # dB
MODELS = ROOT / "models"


def torch_y_model(net: torch.nn.Module):
    """A torch SR network as the Y → Y callable sr_eval takes."""
    net = net.eval()

    def run(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(y, np.float32))[None, None])[0, 0].numpy()

    return run


def evaluate_torch_model(net: torch.nn.Module, scale: int, sets=("Set5", "Set14"),
                         data_dir: Path = DEFAULT_DATA) -> dict[str, float]:
    results = sr_eval.evaluate({"m": torch_y_model(net)}, scale, sets, data_dir, bicubic=False)
    return {r.set: round(r.psnr, 3) for r in results}


def calibration_crops(scale: int, n: int, size: int = 96, seed: int = 1, data_dir: Path = DEFAULT_DATA):
    pairs = prepare_pairs(scale, data_dir)
    rng = np.random.default_rng(seed)
    ok = [i for i, a in enumerate(pairs.lr) if min(a.shape) >= size]
    crops = []
    for i in rng.choice(ok, size=n, replace=len(ok) < n):
        a = pairs.lr[i]
        y, x = rng.integers(0, a.shape[0] - size + 1), rng.integers(0, a.shape[1] - size + 1)
        crops.append((a[y:y + size, x:x + size][None, None].copy(), pairs.hr[i]))
    return pairs, crops


def _gap_on_train(fp32: Path, int8: Path, pairs, idx) -> float:
    """Mean |PSNR(INT8) − PSNR(FP32)| (vs HR) on a few whole training images."""
    f, q = sr_eval.onnx_y_model(fp32, 1), sr_eval.onnx_y_model(int8, 1)
    gaps = []
    for i in idx:
        lr, hr = pairs.lr[i], pairs.hr[i].astype(np.float64)
        p = [10 * np.log10(1.0 / np.mean((np.clip(m(lr), 0, 1) - hr) ** 2)) for m in (f, q)]
        gaps.append(abs(p[1] - p[0]))
    return float(np.mean(gaps))


def training_summary(state: dict) -> str:
    """One line on how the checkpoint was trained, from what it recorded, and what it started from."""
    args = state.get("args", {})
    patch, batch = args.get("patch", "64"), args.get("batch", "32")
    line = (f"{state['step']} steps, {state['elapsed'] / 60:.0f} min on a shared 2-core CPU, batch {batch} "
            f"of {patch}x{patch} LR patches, L1, Adam, EMA weights")
    init = state.get("init")
    if init is None and args.get("init") not in (None, "None"):
        path = Path(args["init"])  # checkpoints from before the trainer recorded its init
        if path.is_file():
            ck = torch.load(path, map_location="cpu", weights_only=False)
            init = {"path": path.name, "scale": ck["scale"], "step": ck["step"], "elapsed": ck["elapsed"]}
    if init:
        line += (f"; initialised from {init['path']} (x{init['scale']}, {init['step']} steps, "
                 f"{init['elapsed'] / 60:.0f} min)")
    return line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="M5")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=MODELS)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--calib", type=int, default=64, help="calibration crops (training LR luma)")
    ap.add_argument("--sets", nargs="+", default=list(sr_eval.SETS))
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    variant = args.variant.upper()
    f, m = VARIANTS[variant]
    ckpt = args.ckpt or checkpoint_path(variant, args.scale)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    net = load_model(ckpt, use_ema=True)
    collapsed = net.collapse()
    x = torch.rand(2, 1, 41, 37)
    with torch.no_grad():
        ref = net.forward_expanded(x)
        rel = float((collapsed(x) - ref).abs().max() / ref.abs().max())
    print(f"collapse check: max relative error {rel:.2e}", file=sys.stderr)
    if rel > 1e-5:
        raise SystemExit(f"collapsed network differs from the expanded one (rel. error {rel:.2e})")

    stem = f"sesr_{variant.lower()}_x{args.scale}"
    macs = sesr_macs_per_pixel(f, m, args.scale)
    meta = {
        "name": f"SESR-{variant} x{args.scale}",
        "version": "1",
        "scale": args.scale,
        "variant": variant,
        "params": sum(p.numel() for p in collapsed.parameters()),
        "conv_weights": macs,
        "macs_per_input_pixel": macs,
        "receptive_radius": m + 4,
        "activation": net.activation,
        "input": "Y (BT.601 studio range) in [0,1], N×1×H×W",
        "trained_on": "T91 + 29 BSD200 images (291-style set, ../shared/data/sr/train); the paper used DIV2K",
        "training": training_summary(state),
        "paper": "Bhardwaj et al., Collapsible Linear Blocks for Super-Efficient Super Resolution, arXiv 2103.09404",
        "licence": "weights: research/non-commercial (training images are research-only)",
    }
    fp32 = export_onnx(collapsed, args.out / f"{stem}_fp32.onnx", torch.rand(1, 1, 64, 64), meta,
                       dynamic_hw=True)
    diff = compare_with_torch(collapsed, fp32, [torch.rand(1, 1, 70, 50)])
    print(f"ONNX vs torch: max abs {diff['max_abs']:.2e}", file=sys.stderr)

    pairs, crops = calibration_crops(args.scale, args.calib, size=192 // args.scale, data_dir=args.data)
    held_back = list(range(0, len(pairs.lr), max(1, len(pairs.lr) // 12)))[:12]
    best = None
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        # From the most to the least quantised: everything; only the convolutions (PReLU, the
        # residual adds, depth-to-space and the clip stay float, so the output is not put on an
        # 8-bit grid twice); the convolutions but the output one (whose result is added straight
        # onto the picture). The first level whose output stays within MAX_TRAIN_GAP dB of FP32 on
        # held-back training images is kept (the target is 0.1 dB on the test sets).
        out_conv = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"][-1]
        levels = [("all ops", None, None), ("convs", ["Conv"], None),
                  ("convs but the output conv", ["Conv"], [out_conv])]
        for level, ops, exclude in levels:
            for method in ("minmax", "percentile"):
                name = f"{method}; {level} quantised"
                cand = quantize_int8(fp32, Path(tmp) / f"{method}_{len(ops or [])}_{len(exclude or [])}.onnx",
                                     (c for c, _ in crops),
                                     {"calibration": f"{name}; {len(crops)} training LR crops"},
                                     calibrate_method=method, op_types_to_quantize=ops,
                                     nodes_to_exclude=exclude)
                gap = _gap_on_train(fp32, cand, pairs, held_back)
                print(f"INT8 {name}: mean |ΔPSNR| vs FP32 on held-back training images {gap:.3f} dB",
                      file=sys.stderr)
                if best is None or best[3] != level or gap < best[0]:
                    best = (gap, name, cand, level)
            if best[0] <= MAX_TRAIN_GAP:
                break
        int8 = args.out / f"{stem}_int8.onnx"
        os.replace(best[2], int8)
    print(f"kept {best[1]} calibration → {int8}", file=sys.stderr)

    if args.no_eval:
        return 0
    results = sr_eval.evaluate({f"SESR-{variant} FP32": fp32, f"SESR-{variant} INT8": int8}, args.scale,
                               args.sets, args.data, bicubic=True, threads=1,
                               progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(sr_eval.markdown_table(results))
    out_json = CACHE_DIR / f"eval_{stem}.json"
    out_json.write_text(json.dumps({"meta": {k: str(v) for k, v in meta.items()}, "calibration": best[1],
                                    "results": [r.__dict__ for r in results]}, indent=1))
    print(f"figures: {out_json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
