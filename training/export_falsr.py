"""Export a trained FALSR checkpoint to FP32 and INT8 (static QDQ) ONNX in ``models/``.

    python -m training.export_falsr --variant C            # → models/falsr_c_x2_{fp32,int8}.onnx

The SR contract (DESIGN §2): input ``input`` float32 N×1×H×W (Y in [0, 1]), output ``output``
N×1×sH×sW; height and width are dynamic. Metadata: ``scale``, ``variant``, ``params``,
``macs_per_input_pixel``, ``receptive_radius`` (the tiler's margin), the training budget it had
(``trained_steps``, ``trained_hours``) and where it came from. The EMA weights are exported.
INT8 is calibrated on LR patches of the training set (never the test sets). Both go through
``training.onnx_export`` (the one export/quantise path) and are checked against torch here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from training.falsr import PUBLISHED, macs_per_input_pixel, receptive_radius
from training.onnx_export import compare_with_torch, export_onnx, quantize_int8
from training.train_falsr import checkpoint_path, load_ema_model

ROOT = Path(__file__).resolve().parents[1]


def model_paths(variant: str, scale: int = 2, out_dir: Path = ROOT / "models") -> dict[str, Path]:
    stem = f"falsr_{variant.lower()}_x{scale}"
    return {p: Path(out_dir) / f"{stem}_{p}.onnx" for p in ("fp32", "int8")}


def falsr_metadata(model, variant: str, info: dict | None = None) -> dict[str, object]:
    info = info or {}
    pub = PUBLISHED[variant.upper()]
    return {
        "name": f"FALSR-{variant.upper()}",
        "family": "falsr",
        "variant": f"FALSR-{variant.upper()}",
        "version": "1",
        "scale": model.scale,
        "macs_per_input_pixel": int(round(macs_per_input_pixel(model))),
        "receptive_radius": receptive_radius(model.arch),
        "trained_steps": info.get("step", 0),
        "trained_hours": round(float(info.get("seconds", 0.0)) / 3600, 2),
        "trained_on": "sr/train (T91 + 29 BSD200 images), Y channel, LR by MATLAB-bicubic imresize",
        "architecture": "FALSR (Chu et al., arXiv 1901.07261); cells as in xiaomi-automl/FALSR's released graphs",
        "published_set5_set14_b100": f"{pub['Set5']}/{pub['Set14']}/{pub['B100']} dB (DIV2K, fully trained)",
    }


# INT8 mixed precision: ONNX node names (torch exporter's, checked at export) left in FP32.
# Measured on FALSR-C (step 4,289, Set5; every other layer quantised; /tmp diagnosis in the model
# card): all INT8 36.48 dB vs FP32 36.92; MinMax, Percentile, Entropy and 48 vs 200 calibration
# patches all within 0.06 dB of each other; keeping one of the big ib-cell / concat layers float
# gains nothing (< 0.01 dB), keeping the stem gains 0.19, the output conv 0.09, stem + fuse +
# global residual + output 0.35 dB. The loss is on the image-carrying path: the 1→32 stem (9
# weights per channel at 7 bits) and the HR reconstruction, not the cells.
FLOAT_LAYERS = {
    "none": (),
    "output": ("/out/Conv",),
    "io": ("/stem/Conv", "/fuse/Conv", "/Add", "/upsample/DepthToSpace", "/out/Conv"),
}


def float_nodes(fp32_path: Path, preset: str) -> list[str] | None:
    """The node names of a ``FLOAT_LAYERS`` preset, checked against the exported graph."""
    import onnx

    names = FLOAT_LAYERS[preset]
    present = {n.name for n in onnx.load(str(fp32_path)).graph.node}
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"{fp32_path}: nodes {missing} not in the graph (exporter naming changed?)")
    return list(names) or None


def calibration_inputs(scale: int, count: int = 48, patch: int = 96, seed: int = 123):
    """LR Y patches from the training set, one per calibration run."""
    from training.sr_data import PatchSampler, prepare_pairs

    sampler = PatchSampler(prepare_pairs(scale), patch=patch, batch=1, seed=seed)
    for _ in range(count):
        yield next(sampler)[0]


def export(variant: str, scale: int = 2, checkpoint: Path | None = None, out_dir: Path = ROOT / "models",
           calibration_count: int = 48, model=None, info: dict | None = None,
           calibration=None, fp32_output_conv: bool = False, float_layers: str | None = None,
           calibrate_method: str = "minmax") -> dict[str, Path]:
    """Write the FP32 and INT8 files; ``model``/``info`` bypass the checkpoint and ``calibration``
    (an iterable of N×1×h×w float32 arrays) the training-set patches (tests)."""
    if model is None:
        model, info = load_ema_model(variant, scale, checkpoint)
    model = model.eval()
    paths = model_paths(variant, scale, out_dir)
    meta = falsr_metadata(model, variant, info)
    example = torch.rand(1, 1, 32, 32)
    export_onnx(model, paths["fp32"], example, meta, dynamic_hw=True)
    if calibration is None:
        calibration = calibration_inputs(scale, calibration_count)
    preset = float_layers or ("output" if fp32_output_conv else "none")
    exclude = float_nodes(paths["fp32"], preset)
    if exclude:
        meta = meta | {"int8_float_layers": ",".join(exclude)}
    quantize_int8(paths["fp32"], paths["int8"], calibration, meta, nodes_to_exclude=exclude,
                  calibrate_method=calibrate_method)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="C", choices=["A", "B", "C"])
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--calibration", type=int, default=48, help="LR patches used to calibrate INT8")
    ap.add_argument("--fp32-output-conv", action="store_true",
                    help="leave the final 8→1 HR conv unquantised (costs 0.07 %% of the MACs)")
    ap.add_argument("--float-layers", default=None, choices=sorted(FLOAT_LAYERS),
                    help="INT8 mixed precision: which layers stay FP32 (see FLOAT_LAYERS); "
                         "overrides --fp32-output-conv")
    ap.add_argument("--calibrate-method", default="minmax", choices=["minmax", "percentile", "entropy"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    ckpt = args.checkpoint or checkpoint_path(args.variant, args.scale)
    model, info = load_ema_model(args.variant, args.scale, ckpt)
    paths = export(args.variant, args.scale, ckpt, args.out, args.calibration, model=model, info=info,
                   fp32_output_conv=args.fp32_output_conv, float_layers=args.float_layers,
                   calibrate_method=args.calibrate_method)
    rng = np.random.default_rng(0)
    probe = [rng.random((1, 1, 40, 56), dtype=np.float32)]
    d = compare_with_torch(model, paths["fp32"], probe)
    print(f"{paths['fp32']}: max |ONNX - torch| = {d['max_abs']:.2e}")
    d8 = compare_with_torch(model, paths["int8"], probe)
    print(f"{paths['int8']}: max |INT8 - torch| = {d8['max_abs']:.3f} (quantisation)")
    print(f"trained {info.get('step', 0)} steps, {info.get('seconds', 0) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
