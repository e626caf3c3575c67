"""`cfr-studio restore INPUT [-o OUTPUT] [--k N|auto] [--model PATH] [--faces …] [--blend F]`

Restores the faces in one photo. With no face found, the photo is still written (unchanged) and
a warning says so: the output exists either way, so scripts can count on it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.core.errors import Cancelled, CfrError
from app.core.io import SUPPORTED_SUFFIXES


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "restore",
        help="restore the faces in one photo",
        description="Restore the faces in one photo and write the result beside it "
        "(NAME_restored.EXT) or to -o. A photo with no face found is written unchanged, with a "
        "warning.",
    )
    p.add_argument("input", metavar="INPUT", type=Path, help="the photo (JPEG, PNG, TIFF, WebP, BMP)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output file (default: INPUT's name + _restored, same folder and type); "
                   "its suffix chooses the format")
    add_restore_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists (the input photo is never replaced)")
    p.set_defaults(func=run)
    return p


def add_restore_arguments(p: argparse.ArgumentParser) -> None:
    """The options `restore` and `batch` share."""
    p.add_argument("--k", type=parse_k, default=2, metavar="N|auto",
                   help="restoration cycles: a number, or 'auto' to stop at the fixed point "
                   "(default 2)")
    p.add_argument("--model", type=Path, default=None, metavar="PATH",
                   help="CFRNet ONNX model (default: the INT8 model in models/)")
    p.add_argument("--faces", type=parse_faces, default="all", metavar="all|largest|0,2",
                   help="which faces: all, the largest, or indices (largest face first, from 0)")
    p.add_argument("--min-face", type=int, default=0, metavar="PX",
                   help="leave faces narrower than PX pixels alone (default 0: all)")
    p.add_argument("--blend", type=parse_blend, default=1.0, metavar="F",
                   help="strength, 0–1: 1 = fully restored, 0 = the original (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network (default 0: all cores)")
    p.add_argument("--quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP quality of the written photo, 50–100 (default 95)")
    p.add_argument("--upscale", type=int, choices=(2, 4), default=None, metavar="2|4",
                   help="also enlarge the whole photo 2× or 4× (the faces are restored at the new "
                   "size)")
    p.add_argument("--upscale-model", default="sesr", metavar="sesr|falsr|PATH",
                   help="the upscaler: 'sesr' (fastest, the default; ×2 and ×4), 'falsr' (best "
                   "quality, ×2 only) or an SR ONNX file")


def parse_k(text: str):
    from app.core.restorer import parse_k as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_faces(text: str):
    from app.core.pipeline import parse_faces as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_quality(q: int) -> int:
    if not 50 <= q <= 100:
        raise CfrError(f"--quality must be from 50 to 100, not {q}")
    return q


def parse_blend(text: str) -> float:
    try:
        f = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--blend must be a number from 0 to 1, not '{text}'")
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"--blend must be from 0 to 1, not {f}")
    return f


def restore_options(args):
    from app.core.pipeline import RestoreOptions

    return RestoreOptions(k=args.k, faces=args.faces, min_face=args.min_face, blend=args.blend,
                          upscale=args.upscale, quality=parse_quality(args.quality),
                          upscale_model=upscale_model_path(args.upscale_model, args.upscale))


# Both default to INT8: each stays within 0.1 dB of its FP32 file (FALSR-C's INT8 keeps five
# image-path layers in FP32 for that; models/MODEL_CARD.md) and runs faster.
UPSCALER_FAMILIES = {"sesr": "int8", "falsr": "int8"}


def upscale_model_path(choice: str, scale: int | None) -> Path | None:
    """--upscale-model: a family name resolved to its shipped file for ``scale``, or a path."""
    if scale is None:
        return None
    from app.core.upscaler import default_upscaler_path

    family = choice.lower()
    if family not in UPSCALER_FAMILIES:
        return Path(choice)
    if family == "falsr" and scale != 2:
        raise CfrError("FALSR upscales ×2 only; use --upscale 2, or --upscale-model sesr for ×4.")
    return default_upscaler_path(scale, family=family, precision=UPSCALER_FAMILIES[family])


def open_restorer(model: Path | None, threads: int = 0):
    """The Restorer for --model (default: the INT8 CFRNet in models/). A missing or damaged model
    raises ModelError saying exactly that and how to get a good one."""
    from app.core.restorer import Restorer

    return Restorer(model_path=model, threads=threads)


def default_output(input_path: Path) -> Path:
    return input_path.with_name(f"{input_path.stem}_restored{input_path.suffix}")


def error(command: str, message: str) -> None:
    print(f"cfr-studio {command}: error: {message}", file=sys.stderr)


def run(args) -> int:
    from app.core.pipeline import Pipeline, restore_file

    src: Path = args.input
    dst: Path = args.output if args.output is not None else default_output(src)
    t0 = time.perf_counter()
    try:
        # the cheap refusals before the work, not after it
        if dst.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise CfrError(f"Cannot write '{dst}': use a .jpg, .png, .tif, .webp or .bmp name.")
        if dst.exists() and src.exists() and dst.resolve() == src.resolve():
            raise CfrError(f"'{dst}' is the input photo, which is never overwritten; "
                           "choose another output name with -o.")
        restorer = open_restorer(args.model, args.threads)
        pipeline = Pipeline(restorer=restorer)
        result = restore_file(src, dst, restore_options(args), pipeline=pipeline,
                              overwrite=args.overwrite)
    except KeyboardInterrupt:
        error("restore", "interrupted; nothing was written.")
        return 130
    except Cancelled:
        error("restore", "cancelled; nothing was written.")
        return 130
    except CfrError as exc:
        error("restore", str(exc))
        return 1
    for w in getattr(result.photo.meta, "warnings", []) or []:
        print(f"warning: {w}", file=sys.stderr)
    chosen = [f for f in result.faces if f.selected]
    if not result.faces:
        print(f"warning: no faces found in '{src}'; it was written unchanged.", file=sys.stderr)
    elif not chosen:
        print(f"warning: none of the {len(result.faces)} faces matched --faces/--min-face; "
              "the photo was written unchanged.", file=sys.stderr)
    cycles = sorted({len(f.cycles) for f in chosen})
    k_text = f"k={args.k}" if args.k != "auto" else f"k=auto ({'/'.join(map(str, cycles)) or '-'} cycles)"
    print(f"{len(chosen)} of {len(result.faces)} faces restored ({k_text}, {restorer.name}) "
          f"in {time.perf_counter() - t0:.1f} s → {dst}")
    return 0
