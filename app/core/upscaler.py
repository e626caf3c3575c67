"""Whole-photo super-resolution (×2 / ×4) with an SESR-style ONNX model, tile by tile.

The network sees only luma: the photo goes to BT.601 YCbCr (the studio-range conversion the SR
literature and our training data use), Y goes through the model, Cb and Cr are upscaled by a
classical bicubic filter (the eye is far less sensitive to chroma detail), and the three are
converted back to RGB in the photo's own dtype (uint8 or uint16).

Tiles: the photo is cut into ``tile``×``tile`` LR blocks; each is run with a margin of real
neighbouring pixels at least as wide as the model's receptive radius, and only its centre is
kept. Zero padding inside the network then never reaches a kept pixel, so the tiled result is
the untiled one (to float rounding), memory is bounded by one tile plus the output image, and the
work reports progress and can be cancelled between tiles.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from app.core.errors import CancelToken, ModelError, ProgressFn, check_cancel
from app.core.onnx_session import OnnxModel

__all__ = [
    "Upscaler",
    "default_upscaler_path",
    "models_dir",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "DEFAULT_MARGIN",
]

# BT.601 studio-range YCbCr of RGB in [0, 1], itself in [0, 1] (MATLAB rgb2ycbcr / 255)
_RGB2YCC = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
) / 255.0
_YCC_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
_YCC2RGB = np.linalg.inv(_RGB2YCC)

# LR pixels of real context around each tile when the model does not state its receptive radius:
# SESR's is m + 4 (5×5 in, m 3×3, 5×5 out), 9 for M5 and 15 for M11/XL.
DEFAULT_MARGIN = 16


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 RGB in [0, 1] (any float dtype) → YCbCr in [0, 1], same shape, float32 for float32
    input, else float64."""
    m = _RGB2YCC.astype(rgb.dtype if rgb.dtype == np.float32 else np.float64)
    return rgb @ m.T + _YCC_OFFSET.astype(m.dtype)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_ycbcr`` (not clipped)."""
    m = _YCC2RGB.astype(ycc.dtype if ycc.dtype == np.float32 else np.float64)
    return (ycc - _YCC_OFFSET.astype(m.dtype)) @ m.T


def models_dir() -> Path:
    """The folder of the shipped models: $CFR_MODELS, else ``models/`` beside the app package
    (inside the bundle when frozen; app.paths knows both)."""
    from app.paths import models_dir as shipped_models_dir

    return shipped_models_dir()


DEFAULT_VARIANT = {"sesr": "m5", "falsr": "c"}


def default_upscaler_path(scale: int = 2, family: str = "sesr", precision: str = "int8") -> Path:
    """The shipped model for ``scale``: ``models/sesr_m5_x2_int8.onnx`` and the like; for 'falsr'
    FALSR-C (``falsr_c_x2_…``). Else the first ``{family}_*x{scale}_{precision}.onnx`` found."""
    if scale not in (2, 4):
        raise ValueError("scale must be 2 or 4")
    if precision not in ("int8", "fp32"):
        raise ValueError("precision must be 'int8' or 'fp32'")
    folder = models_dir()
    # named, so that another variant in models/ (SESR-M11, FALSR-B) never becomes the default
    preferred = folder / f"{family}_{DEFAULT_VARIANT.get(family, 'm5')}_x{scale}_{precision}.onnx"
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob(f"{family}_*x{scale}_{precision}.onnx"))
    return found[0] if found else preferred


class Upscaler:
    """``Upscaler(path).upscale(rgb)`` → the photo ``scale``× larger, same dtype.

    ``tile`` is the LR block size each inference covers (plus its margin); ``threads`` the ONNX
    Runtime intra-op threads (0: its choice). The model's ``scale`` comes from its metadata and
    the context margin from ``receptive_radius`` in its metadata, else ``DEFAULT_MARGIN``.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 0, tile: int = 256,
                 margin: int | None = None):
        self.path = Path(model_path) if model_path is not None else default_upscaler_path()
        self.model = OnnxModel(self.path, threads=threads)
        self.metadata = dict(self.model.metadata)
        if tile < 16:
            raise ValueError("tile must be at least 16 pixels")
        self.tile = int(tile)
        self.scale = self._read_scale()
        radius = self.metadata.get("receptive_radius")
        self.margin = int(margin if margin is not None else (int(radius) if radius else DEFAULT_MARGIN))
        self.precision = self.metadata.get("precision", "")
        self.name = self.metadata.get("variant", self.path.stem)

    def _read_scale(self) -> int:
        text = self.metadata.get("scale")
        try:
            scale = int(text) if text is not None else None
        except ValueError:
            raise ModelError(f"{self.path}: metadata 'scale' is {text!r}, not a whole number") from None
        probe = np.full((1, 1, 8, 8), 0.5, np.float32)
        try:
            out = self.model.run1(probe)
        except Exception as exc:
            raise ModelError(f"{self.path}: not an upscaling model taking N×1×H×W luma ({exc})") from exc
        if out.ndim != 4 or out.shape[1] != 1 or out.shape[2] % 8 or out.shape[2] != out.shape[3]:
            raise ModelError(f"{self.path}: output shape {out.shape} for an 8×8 input is not N×1×s8×s8")
        measured = out.shape[2] // 8
        if scale is not None and scale != measured:
            raise ModelError(f"{self.path}: metadata says scale {scale} but the model upscales ×{measured}")
        if measured not in (2, 3, 4):
            raise ModelError(f"{self.path}: upscales ×{measured}; expected ×2 or ×4")
        return measured

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The LR blocks (y0, y1, x0, x1) that cover the image, row by row."""
        return [
            (y, min(y + self.tile, height), x, min(x + self.tile, width))
            for y in range(0, height, self.tile)
            for x in range(0, width, self.tile)
        ]

    def upscale(self, rgb: np.ndarray, progress: ProgressFn | None = None,
                cancel: CancelToken = None) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"upscale wants an H×W×3 RGB image, got shape {rgb.shape}")
        if rgb.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"upscale wants uint8 or uint16 pixels, got {rgb.dtype}")
        peak = 255.0 if rgb.dtype == np.uint8 else 65535.0
        # the colour conversions as 3×4 affine matrices (pixel scale folded in) for cv2.transform,
        # which does them in one vectorised pass per tile
        to_ycc = np.hstack([_RGB2YCC / peak, _YCC_OFFSET[:, None]]).astype(np.float32)
        to_rgb = np.hstack([_YCC2RGB * peak, -(_YCC2RGB @ _YCC_OFFSET)[:, None] * peak]).astype(np.float32)
        h, w = rgb.shape[:2]
        s, mg = self.scale, self.margin
        out = np.empty((h * s, w * s, 3), rgb.dtype)
        blocks = self.tiles(h, w)
        for n, (y0, y1, x0, x1) in enumerate(blocks):
            check_cancel(cancel)
            # the block plus its margin of real context, clipped to the image
            cy0, cy1, cx0, cx1 = max(y0 - mg, 0), min(y1 + mg, h), max(x0 - mg, 0), min(x1 + mg, w)
            ycc = cv2.transform(rgb[cy0:cy1, cx0:cx1].astype(np.float32), to_ycc)
            luma = self.model.run1(np.ascontiguousarray(ycc[None, None, :, :, 0]))[0, 0]
            chroma = cv2.resize(ycc[:, :, 1:], ((cx1 - cx0) * s, (cy1 - cy0) * s),
                                interpolation=cv2.INTER_CUBIC)
            oy, ox = (y0 - cy0) * s, (x0 - cx0) * s
            th, tw = (y1 - y0) * s, (x1 - x0) * s
            big = np.empty((th, tw, 3), np.float32)
            big[:, :, 0] = luma[oy:oy + th, ox:ox + tw]
            big[:, :, 1:] = chroma[oy:oy + th, ox:ox + tw]
            pixels = cv2.transform(big, to_rgb)
            np.clip(pixels, 0.0, peak, out=pixels)
            pixels += 0.5  # round half up on the cast below
            out[y0 * s:y1 * s, x0 * s:x1 * s] = pixels.astype(rgb.dtype)
            if progress is not None:
                progress(n + 1, len(blocks), f"upscaling ×{s}: tile {n + 1} of {len(blocks)}")
        return out
