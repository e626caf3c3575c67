"""Super-resolution evaluation by the standard protocol (Set5 / Set14 / B100), shared by SESR and
FALSR, with bicubic as the baseline.

Protocol (../shared/data/README.md, "LR generation"; sr/PUBLISHED.md):
1. HR loaded with the app's loader (Pillow; B100 is lossless WebP), 8-bit RGB, modcropped
   (top-left anchored) to a multiple of the scale.
2. LR = MATLAB ``imresize(HR, 1/s, 'bicubic')`` on the uint8 RGB image, rounded to uint8
   (``app.core.imresize``, bit-exact with MATLAB).
3. The model sees the LR luma: BT.601 ``rgb2ycbcr`` Y / 255 (studio range, unrounded float32 —
   what ``training.sr_data`` trains on); a grey image (Set14 ``bridge``) is its own Y, / 255.
4. Its output Y (clipped to [0, 1]) is quantised to 8 bits as a saved image would be, and compared
   with the HR Y (MATLAB ``rgb2ycbcr`` on uint8, rounded; grey images as they are) with ``s``
   pixels shaved from each border: PSNR and SSIM (Wang et al., 11×11 Gaussian), averaged over
   the images of a set.
Bicubic goes through the same path as a model (``imresize(LR_Y, s)``).

A model is a callable (H×W float32 Y in [0, 1] → sH×sW) or an ONNX file with the SESR contract
(input N×1×H×W, output N×1×sH×sW; run through ``app.core.onnx_session.OnnxModel``).

CLI (prints a markdown table; ``--json`` writes every per-image figure):
    python -m training.sr_eval --scale 2 --model sesr_m5=models/sesr_m5_x2_fp32.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core.imresize import imresize
from app.core.io import load_image
from app.core.metrics import psnr, rgb_to_y, shave, ssim

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CFR_DATA", ROOT.parent / "shared" / "data"))
SETS = ("Set5", "Set14", "B100")
IMAGE_SUFFIXES = {".png", ".webp", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}

YModel = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "SETS",
    "TestImage",
    "load_test_set",
    "onnx_y_model",
    "bicubic_y_model",
    "evaluate_image",
    "evaluate_set",
    "evaluate",
    "markdown_table",
    "main",
]


@dataclass
class TestImage:
    """One HR test image prepared for a scale: modcropped HR Y (uint8, the reference) and the LR
    luma the model sees (float32 in [0, 1])."""

    name: str
    scale: int
    hr_y: np.ndarray  # uint8, H×W (H, W multiples of scale)
    lr_y: np.ndarray  # float32, H/s × W/s, [0, 1]
    grey: bool


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def prepare_image(path: Path, scale: int) -> TestImage:
    photo = load_image(path)
    rgb = photo.rgb
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.floor(rgb.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)
    hr = modcrop(rgb, scale)
    lr = imresize(hr, 1.0 / scale)  # uint8 in → uint8 out, rounded per pass like MATLAB
    grey = bool(photo.meta.was_grey)  # a one-channel file, as MATLAB's size(im, 3) == 1
    if grey:
        # The SR tables use a one-channel image as its own Y (no studio-range conversion).
        hr_y = hr[..., 0].copy()
        lr_y = (lr[..., 0].astype(np.float32) / np.float32(255.0))
    else:
        hr_y = rgb_to_y(hr, as_uint8=True)
        lr_y = (rgb_to_y(lr) / 255.0).astype(np.float32)
    return TestImage(Path(path).stem, scale, hr_y, lr_y, grey)


def test_set_files(name: str, data_dir: Path = DEFAULT_DATA) -> list[Path]:
    folder = Path(data_dir) / "sr" / "test" / name
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{folder}: no test images found (expected the {name} set)")
    return files


def load_test_set(name: str, scale: int, data_dir: Path = DEFAULT_DATA, limit: int | None = None) -> list[TestImage]:
    files = test_set_files(name, data_dir)[:limit]
    return [prepare_image(p, scale) for p in files]


# ------------------------------------------------------------------------------------------ models


def onnx_y_model(path: str | os.PathLike, threads: int = 0) -> YModel:
    """An SESR-contract ONNX file as a Y → Y callable."""
    from app.core.onnx_session import OnnxModel

    model = OnnxModel(Path(path), threads=threads)

    def run(y: np.ndarray) -> np.ndarray:
        out = model.run1(np.ascontiguousarray(y, dtype=np.float32)[None, None])
        return out[0, 0]

    run.model = model  # type: ignore[attr-defined]
    return run


def bicubic_y_model(scale: int) -> YModel:
    """MATLAB bicubic ×scale of the luma: the baseline every SR table lists."""

    def run(y: np.ndarray) -> np.ndarray:
        return imresize(y.astype(np.float64), float(scale))

    return run


def as_model(model: YModel | str | os.PathLike, threads: int = 0) -> YModel:
    if callable(model):
        return model
    return onnx_y_model(model, threads)


# ----------------------------------------------------------------------------------------- metrics


def quantise_y(y: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.clip(y.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def evaluate_image(img: TestImage, model: YModel, quantise: bool = True) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``model``'s output for one test image, on Y with ``scale`` px shaved."""
    out = np.asarray(model(img.lr_y))
    if out.ndim == 3:
        out = out[..., 0] if out.shape[-1] == 1 else out[0]
    if out.shape != img.hr_y.shape:
        raise ValueError(f"{img.name}: model output {out.shape}, expected {img.hr_y.shape} (×{img.scale})")
    if quantise:
        sr = quantise_y(out).astype(np.float64)
    else:
        sr = np.clip(out.astype(np.float64), 0.0, 1.0) * 255.0
    hr = img.hr_y.astype(np.float64)
    s = img.scale
    return psnr(shave(sr, s), shave(hr, s), 255.0), ssim(shave(sr, s), shave(hr, s), 255.0)


@dataclass
class SetResult:
    set: str
    scale: int
    model: str
    psnr: float
    ssim: float
    per_image: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: float = 0.0


def evaluate_set(images: Sequence[TestImage], model: YModel, set_name: str, model_name: str,
                 quantise: bool = True) -> SetResult:
    t0 = time.perf_counter()
    per = {im.name: evaluate_image(im, model, quantise) for im in images}
    vals = np.array(list(per.values()))
    return SetResult(set_name, images[0].scale, model_name, float(vals[:, 0].mean()), float(vals[:, 1].mean()),
                     per, time.perf_counter() - t0)


def evaluate(models: dict[str, YModel | str | os.PathLike] | None, scale: int, sets: Iterable[str] = SETS,
             data_dir: Path = DEFAULT_DATA, bicubic: bool = True, threads: int = 0, limit: int | None = None,
             quantise: bool = True, progress: Callable[[str], None] | None = None) -> list[SetResult]:
    """Per-set averages for bicubic (first, if asked) and each model, at one scale."""
    named: dict[str, YModel] = {}
    if bicubic:
        named["Bicubic"] = bicubic_y_model(scale)
    for name, m in (models or {}).items():
        named[name] = as_model(m, threads)
    results = []
    for set_name in sets:
        images = load_test_set(set_name, scale, data_dir, limit)
        for name, model in named.items():
            r = evaluate_set(images, model, set_name, name, quantise)
            results.append(r)
            if progress:
                progress(f"x{scale} {set_name:6s} {name:20s} {r.psnr:.2f} dB / {r.ssim:.4f}  ({r.seconds:.1f} s)")
    return results


def markdown_table(results: Sequence[SetResult]) -> str:
    """Rows = (model, scale), columns = sets, cells 'PSNR / SSIM'."""
    sets = list(dict.fromkeys(r.set for r in results))
    rows = list(dict.fromkeys((r.model, r.scale) for r in results))
    cell = {(r.model, r.scale, r.set): f"{r.psnr:.2f} / {r.ssim:.4f}" for r in results}
    lines = ["| Model | Scale | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for model, scale in rows:
        lines.append(f"| {model} | ×{scale} | " + " | ".join(cell.get((model, scale, s), "–") for s in sets) + " |")
    return "\n".join(lines)


def _parse_model(spec: str) -> tuple[str, str]:
    if "=" in spec:
        name, path = spec.split("=", 1)
    else:
        path = spec
        name = Path(spec).stem
    return name, path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH.onnx",
                    help="an SR ONNX model (Y in, Y out); repeatable. NAME defaults to the file stem")
    ap.add_argument("--scale", type=int, nargs="+", default=[2], help="scale(s), e.g. 2 4")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the data folder (has sr/test)")
    ap.add_argument("--no-bicubic", action="store_true")
    ap.add_argument("--no-quantise", action="store_true",
                    help="compare the float output instead of the 8-bit-rounded one")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--json", type=Path, default=None, help="write all figures (per image too) here")
    args = ap.parse_args(argv)

    models = dict(_parse_model(s) for s in args.model)
    results: list[SetResult] = []
    for scale in args.scale:
        # A model file states its scale in its metadata; only pair it with that scale.
        chosen = {}
        for name, path in models.items():
            m = onnx_y_model(path, args.threads)
            meta_scale = m.model.metadata.get("scale")  # type: ignore[attr-defined]
            if meta_scale is None or int(meta_scale) == scale:
                chosen[name] = m
        results += evaluate(chosen, scale, args.sets, args.data, not args.no_bicubic, args.threads, args.limit,
                            not args.no_quantise, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"SR evaluation: Y channel (BT.601), {'8-bit output' if not args.no_quantise else 'float output'}, "
          f"shave = scale, LR by MATLAB-exact imresize; {platform.node()}\n")
    print(markdown_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = [r.__dict__ for r in results]
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
