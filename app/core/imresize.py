"""MATLAB-compatible ``imresize`` (bicubic), in numpy.

The super-resolution literature makes its low-resolution test images with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` and NIQE's second scale is ``imresize(img, 0.5)``; other resizers
(PIL, OpenCV, torch) shift PSNR by ~0.1 dB and NIQE by ~1e-2, so published figures can only be
compared with a faithful port. MATLAB's conventions, reproduced here:

- cubic kernel with a = -0.5 (Keys), support 4 taps;
- when shrinking, the kernel is stretched by 1/scale (antialiasing): h(x) = s·k(s·x), width 4/s;
- output pixel x (1-based) samples input coordinate u = x/s + 0.5·(1 - 1/s);
- taps outside the image are mirrored (symmetric padding, edge pixel repeated);
- weights are normalised to sum 1 per output pixel; all-zero tap columns are dropped;
- the dimension with the smaller scale factor is resized first (rows first when equal);
- for uint8 (uint16) input every pass is rounded and saturated to uint8 (uint16): MATLAB's
  imresizemex returns the input's class; the result has the input's dtype.

Only numpy: this module ships in the app bundle, which has no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["imresize", "cubic", "resize_weights"]


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def resize_weights(
    in_len: int, out_len: int, scale: float, antialias: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_len × taps) and 0-based input indices (out_len × taps) for one dimension,
    exactly as MATLAB's ``contributions`` computes them."""
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if shrink else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # Mirror out-of-range taps: MATLAB's aux = [1:in_len, in_len:-1:1].
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx0 = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx0[:, keep]


def _resize_axis(img: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    # Gather-and-accumulate, one tap at a time: memory stays at a few output-sized arrays even for
    # large photos (a dense out×in matrix would not).
    moved = np.moveaxis(img, axis, 0)
    out = np.zeros((weights.shape[0],) + moved.shape[1:], dtype=np.float64)
    shape = (-1,) + (1,) * (moved.ndim - 1)
    for t in range(weights.shape[1]):
        out += weights[:, t].reshape(shape) * moved[indices[:, t]]
    return np.moveaxis(out, 0, axis)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: Sequence[int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an H×W or H×W×C image like MATLAB's ``imresize(img, scale|[h w], 'bicubic')``.

    Give either ``scale`` (one factor for both axes; the output is ceil(scale·size)) or
    ``output_shape`` (h, w). uint8 / uint16 input gives uint8 / uint16 output (rounded per pass, as
    MATLAB does); any other dtype is computed and returned as float64.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize wants an H×W or H×W×C image, got shape {img.shape}")
    in_h, in_w = img.shape[:2]
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = int(math.ceil(in_h * scale)), int(math.ceil(in_w * scale))
    else:
        out_h, out_w = (int(v) for v in output_shape)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize: output shape must be positive, got {output_shape}")
        scales = (out_h / in_h, out_w / in_w)
    int_max = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(img.dtype)
    out = img.astype(np.float64)
    lengths = ((in_h, out_h), (in_w, out_w))
    # MATLAB resizes along the dimension with the smaller scale first (stable sort: rows on a tie).
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        n_in, n_out = lengths[axis]
        if n_in == n_out and scales[axis] == 1.0:
            continue
        w, idx = resize_weights(n_in, n_out, scales[axis], antialias)
        out = _resize_axis(out, axis, w, idx)
        if int_max is not None:
            out = np.clip(np.floor(out + 0.5), 0, int_max)
    return out.astype(img.dtype) if int_max is not None else out
