"""Export trained CFRNet weights to the app's ONNX models (FP32 and static-QDQ INT8) and check them.

    python -m training.export_cfrnet --weights training/weights/cfrnet_ccfp_ema.fp16.pt

writes models/cfrnet_fp32.onnx and models/cfrnet_int8.onnx (one cycle per call, DESIGN §2: input
``input`` N×3×256×256 float32 RGB in [0, 1], output ``output`` clamped to [0, 1], so k cycles are
k plain calls), then prints how far the FP32 file is from torch, and PSNR/LPIPS of the input and
of k = 1..3 for FP32 and INT8 on val faces degraded with a fixed seed (app.core.metrics).

The export and quantisation are training/onnx_export.py's (the one path for every model here).
The INT8 file is quantised from an exactly equivalent FP32 graph rewritten for ONNX Runtime's
channels-last INT8 kernels (training/onnx_rewrite.py: pixel-unshuffles folded into strided
convolutions, pixel shuffles as one channels-last transpose, SpaceToDepth kept in uint8), ~14 %
less time per cycle on the CPU; the FP32 file is the plain export. INT8 calibration uses real
aligned faces from the training pack: degraded ones (what the first cycle sees) and, for a third
of them, the FP32 model's output on them (what later cycles see).
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
from torch import nn

from app.core.align import TEMPLATE_256
from training.cfrnet import count_macs
from training.degrade import degrade, degrade_eval_set
from training.face_pack import load_pack
from training.onnx_export import _save_atomic, compare_with_torch, export_onnx, quantize_int8
from training.onnx_rewrite import rewrite_for_int8, space_to_depth_in_uint8
from training.train_cfrnet import load_weights

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.path.expanduser("~/.cache/cfr-studio"))
LICENCE = ("Weights trained on research / non-commercial face data (UTKFace, CelebA-HQ, FFHQ "
           "samples, selfies; see models/MODEL_CARD.md): research and non-commercial use only")


class OneCycle(nn.Module):
    """What the ONNX file computes: one cycle, clamped to the valid range [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.net(x), 0.0, 1.0)


def metadata_for(net: nn.Module, info: dict, version: str, trained_on: str) -> dict:
    ks = [k for k in (1, 2, 3, 6) if f"psnr_{k}" in info]
    rec_psnr = max(ks, key=lambda k: info[f"psnr_{k}"]) if ks else 2
    rec_lpips = min(ks, key=lambda k: info[f"lpips_{k}"]) if ks else 3
    return {
        "name": "CFRNet",
        "version": version,
        "macs_per_cycle": count_macs(net, 256),
        "recommended_k_psnr": rec_psnr,
        "recommended_k_lpips": rec_lpips,
        "template": json.dumps(TEMPLATE_256.round(2).tolist()),
        "trained_on": trained_on,
        "licence": LICENCE,
        "architecture": json.dumps(net.config),
    }


def calibration_inputs(pack: np.ndarray, n: int, seed: int, fp32_path: Path):
    """n float32 1×3×256×256 arrays: degraded pack faces, every third replaced by FP32 f(x)."""
    from app.core.onnx_session import OnnxModel

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pack), size=min(n, len(pack)), replace=False)
    model = OnnxModel(fp32_path, threads=2)
    for i, j in enumerate(idx):
        x = degrade(np.asarray(pack[j]), rng)
        t = (x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        if i % 3 == 2:
            t = model.run1(t)
        yield np.ascontiguousarray(t, dtype=np.float32)


def quantize_for_cpu(fp32: Path, int8: Path, calibration, meta: dict) -> Path:
    """The INT8 file: the FP32 graph rewritten (exactly) for ONNX Runtime's INT8 kernels, quantised
    by training/onnx_export.quantize_int8, then its SpaceToDepth kept in uint8."""
    with tempfile.TemporaryDirectory(dir=int8.parent) as tmp:
        src = Path(tmp) / "for_int8.onnx"
        onnx.save(rewrite_for_int8(onnx.load(fp32)), src)
        quantize_int8(src, int8, calibration, meta)
    model = onnx.load(int8)
    space_to_depth_in_uint8(model)
    _save_atomic(model, int8)
    return int8


def evaluate_onnx(path: Path, clean: list[np.ndarray], degraded: list[np.ndarray], ks=(1, 2, 3)) -> dict:
    """Mean PSNR/LPIPS of the input and of k cycles of an ONNX model (app.core.metrics)."""
    from app.core.metrics import Lpips, psnr
    from app.core.onnx_session import OnnxModel

    model = OnnxModel(path, threads=2)
    lp = Lpips()
    res: dict[str, list] = {"psnr_in": [], "lpips_in": []}
    for k in ks:
        res[f"psnr_{k}"], res[f"lpips_{k}"] = [], []
    for y, x in zip(clean, degraded):
        res["psnr_in"].append(psnr(x, y))
        res["lpips_in"].append(float(lp.distance(x, y)))
        cur = (x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        for k in range(1, max(ks) + 1):
            cur = model.run1(cur)
            if k in ks:
                out = np.clip(cur[0].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
                res[f"psnr_{k}"].append(psnr(out, y))
                res[f"lpips_{k}"].append(float(lp.distance(out, y)))
    return {k: round(float(np.mean(v)), 4) for k, v in res.items()} | {"n": len(clean)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / "training" / "weights" / "cfrnet_ccfp_ema.fp16.pt")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--name", default="cfrnet", help="files are <name>_fp32.onnx and <name>_int8.onnx")
    ap.add_argument("--pack", type=Path, default=CACHE / "faces_train_256.npy", help="calibration faces")
    ap.add_argument("--val-pack", type=Path, default=CACHE / "faces_val_256.npy")
    ap.add_argument("--calib-n", type=int, default=240)
    ap.add_argument("--eval-n", type=int, default=32)
    ap.add_argument("--eval-seed", type=int, default=2026)
    ap.add_argument("--version", default=None)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--json-out", type=Path, default=None, help="write the evaluation here too")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)

    net, info = load_weights(a.weights)
    step = info.get("step", "?")
    version = a.version or f"0.1-{info.get('mode', 'ccfp')}-step{step}"
    trained_on = (f"faces/train aligned by app.core.faces+align ({info.get('mode', '?')}, step {step}, "
                  f"{info.get('train_hours', '?')} h CPU training)")
    meta = metadata_for(net, info, version, trained_on)
    if "psnr_2" not in info:  # e.g. a checkpoint's EMA: no monitor evaluation came with it
        print(f"{a.weights}: no evaluation in the weights' info, so recommended_k_psnr/lpips are "
              f"the paper's 2/3; save the EMA with its run's last eval.jsonl entry to measure them",
              file=sys.stderr)
    fp32 = a.out_dir / f"{a.name}_fp32.onnx"
    int8 = a.out_dir / f"{a.name}_int8.onnx"
    wrapped = OneCycle(net).eval()
    export_onnx(wrapped, fp32, torch.zeros(1, 3, 256, 256), meta, dynamic_batch=True, opset=17)
    rng = np.random.default_rng(0)
    diff = compare_with_torch(wrapped, fp32, [torch.from_numpy(rng.random((1, 3, 256, 256), np.float32))
                                              for _ in range(2)])
    print(f"{fp32}: max |onnx − torch| = {diff['max_abs']:.2e}")

    pack, _ = load_pack(a.pack)
    quantize_for_cpu(fp32, int8, calibration_inputs(pack, a.calib_n, 1, fp32), meta)
    print(f"{int8}: calibrated on {min(a.calib_n, len(pack))} aligned faces from {a.pack}")

    if a.no_eval:
        return 0
    val, _ = load_pack(a.val_pack)
    sel = np.linspace(0, len(val) - 1, min(a.eval_n, len(val))).round().astype(int)
    clean = [np.asarray(val[i]) for i in sel]
    degraded = degrade_eval_set(clean, a.eval_seed)
    rows = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        rows[label] = evaluate_onnx(path, clean, degraded)
        r = rows[label]
        print(f"{label}: n={r['n']} input PSNR {r['psnr_in']:.2f} LPIPS {r['lpips_in']:.4f} | "
              + " | ".join(f"k={k} PSNR {r[f'psnr_{k}']:.2f} LPIPS {r[f'lpips_{k}']:.4f}" for k in (1, 2, 3)))
    if a.json_out:
        a.json_out.write_text(json.dumps({"weights": str(a.weights), "info": info, "val_pack": str(a.val_pack),
                                          "eval_seed": a.eval_seed, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
