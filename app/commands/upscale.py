"""`cfr-studio upscale INPUT -o OUTPUT --scale 2|4 [--model PATH]`: super-resolve a whole photo
with SESR (no face restoration). Luma goes through the network, chroma through a bicubic filter;
an alpha channel, if any, is upscaled bicubically alongside. 8- and 16-bit photos keep their depth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from app.core.errors import Cancelled, CfrError, ModelError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "upscale",
        help="enlarge a photo ×2 or ×4 with super-resolution (SESR)",
        description="Enlarge one photo ×2 or ×4 with the SESR super-resolution network. Faces are "
        "not restored (use `restore` for that). Output defaults to NAME_x2.EXT beside the input.",
    )
    p.add_argument("input", metavar="INPUT", type=Path, help="the photo (JPEG, PNG, TIFF, WebP, BMP)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output file (default: INPUT's name + _x2 or _x4); its suffix chooses the format")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help="enlargement factor (default 2)")
    p.add_argument("--model", type=Path, default=None, metavar="PATH",
                   help="super-resolution ONNX model (default: the INT8 SESR-M5 for --scale in models/)")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8",
                   help="which shipped model to use when --model is not given (default int8)")
    p.add_argument("--tile", type=int, default=256, metavar="PX",
                   help="tile size in input pixels; smaller uses less memory (default 256)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: all cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists (the input photo is never replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)
    return p


def open_upscaler(model: Path | None, scale: int, precision: str = "int8", threads: int = 0,
                  tile: int = 256):
    """The Upscaler for --model (default: the shipped SESR for ``scale``), checked to upscale
    by ``scale``; ModelError saying how to fix it otherwise."""
    from app.core.upscaler import Upscaler, default_upscaler_path

    path = Path(model) if model is not None else default_upscaler_path(scale, precision=precision)
    how = ("The SESR models ship in the models/ folder of CFR Studio: restore them with "
           "`git checkout -- models/` in the project folder, or give one with --model PATH."
           if model is None else "Check the path given to --model.")
    if not path.is_file():
        raise ModelError(f"The super-resolution model '{path}' is missing. {how}")
    up = Upscaler(path, threads=threads, tile=tile)
    if up.scale != scale:
        raise ModelError(f"'{path}' enlarges ×{up.scale}, but --scale {scale} was asked for.")
    return up


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    h, w = alpha.shape[:2]
    big = cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    return big.astype(alpha.dtype)  # cv2 saturates uint8/uint16 results for us


def default_output(input_path: Path, scale: int) -> Path:
    return input_path.with_name(f"{input_path.stem}_x{scale}{input_path.suffix}")


def run(args) -> int:
    from app.core.io import Photo, load_image, save_image

    src: Path = args.input
    dst: Path = args.output if args.output is not None else default_output(src, args.scale)
    t0 = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\r{message}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        if dst.exists() and not args.overwrite:
            raise CfrError(f"'{dst}' exists; give --overwrite to replace it, or another -o.")
        up = open_upscaler(args.model, args.scale, args.precision, args.threads, args.tile)
        photo = load_image(src)
        rgb = up.upscale(photo.rgb, progress=progress)
        alpha = upscale_alpha(photo.alpha, up.scale) if photo.alpha is not None else None
        warnings = save_image(dst, Photo(rgb, alpha, photo.meta), overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("cfr-studio upscale: error: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Cancelled:
        print("cfr-studio upscale: error: cancelled; nothing was written.", file=sys.stderr)
        return 130
    except CfrError as exc:
        print(f"cfr-studio upscale: error: {exc}", file=sys.stderr)
        return 1
    for w in list(photo.meta.warnings or []) + list(warnings or []):
        print(f"warning: {w}", file=sys.stderr)
    h, w = photo.rgb.shape[:2]
    print(f"{w}×{h} → {rgb.shape[1]}×{rgb.shape[0]} (×{up.scale}, {up.name} {up.precision}) "
          f"in {time.perf_counter() - t0:.1f} s → {dst}")
    return 0
