"""Image-quality metrics: PSNR, SSIM, LPIPS (AlexNet, ONNX) and NIQE, with the SR conventions
(Y channel of BT.601 ``rgb2ycbcr``, border shave).

Each one follows the definition the published tables use, so that our numbers compare with them:

- PSNR: 10·log10(peak² / MSE) over every pixel and channel.
- SSIM: Wang et al. 2004, 11×11 Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering
  (no padding), no downsampling; on colour images the mean of the per-channel SSIMs.
- Y channel: MATLAB ``rgb2ycbcr`` (BT.601 studio range, Y in 16..235 on the 0..255 scale).
- LPIPS v0.1 AlexNet from ``data/metrics/lpips_alex.onnx`` (inputs RGB in [-1, 1]).
- NIQE: Mittal et al. 2013, as computed by basicsr 1.4.2 ``calculate_niqe`` (the reference values
  shipped beside the pristine model were made with it): MSCN with the shipped 7×7 window and
  replicate borders, 96×96 patches, AGGD/GGD moment-matching fits on a 0.001 grid, two scales
  (the second by MATLAB ``imresize`` 0.5), Mahalanobis-like distance to the pristine model.

numpy only (plus onnxruntime through OnnxModel for LPIPS): this module ships in the app bundle,
which excludes scipy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.core.imresize import imresize

__all__ = [
    "psnr",
    "ssim",
    "rgb_to_y",
    "shave",
    "psnr_y",
    "ssim_y",
    "Lpips",
    "niqe",
    "periodic_grid",
    "default_metrics_dir",
    "DEFAULT_LPIPS_MODEL",
    "DEFAULT_NIQE_PARAMS",
]


def default_metrics_dir() -> Path:
    """``../shared/data/metrics`` beside the repository (or ``$CFR_DATA/metrics``)."""
    data = os.environ.get("CFR_DATA")
    root = Path(data) if data else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root / "metrics"


DEFAULT_LPIPS_MODEL = default_metrics_dir() / "lpips_alex.onnx"
DEFAULT_NIQE_PARAMS = default_metrics_dir() / "niqe_pris_params.npz"


def _peak_of(a: np.ndarray) -> float:
    if a.dtype == np.uint8:
        return 255.0
    if a.dtype == np.uint16:
        return 65535.0
    return 1.0


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{what}: images differ in shape, {a.shape} vs {b.shape}")
    return a, b


# --------------------------------------------------------------------------------------------- PSNR


def psnr(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB between two images of the same shape. ``peak`` defaults to 255 for uint8,
    65535 for uint16 and 1.0 otherwise (floats in [0, 1]). Identical images give ``inf``."""
    a, b = _check_pair(a, b, "psnr")
    if peak is None:
        peak = _peak_of(a)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(10.0 * math.log10(peak * peak / mse))


# ------------------------------------------------------------------------------------ period grid


def periodic_grid(a: np.ndarray, b: np.ndarray, period: int = 8, peak: float | None = None) -> float:
    """Amplitude, in 8-bit levels (RMS), of the error's period-``period`` pattern: the error
    a − b (H×W×C) averaged over each of the period×period pixel phases, minus its mean.

    A network with pixel-(un)shuffle stages can lay a regular dot grid or hatching over a restored
    face that LPIPS rewards and PSNR hardly sees; noise, having no period, averages out. Period 8
    (CFRNet's deepest level is three 2× shuffles down) also measures every pattern of period 2
    and 4, with the same value. ``peak`` as for ``psnr`` (255 for uint8, 1.0 for floats)."""
    a, b = _check_pair(a, b, "periodic_grid")
    if peak is None:
        peak = _peak_of(a)
    e = (a.astype(np.float64) - b.astype(np.float64)) * (255.0 / peak)
    if e.ndim == 2:
        e = e[..., None]
    h, w = e.shape[0] - e.shape[0] % period, e.shape[1] - e.shape[1] % period
    phases = e[:h, :w].reshape(h // period, period, w // period, period, -1).mean(axis=(0, 2))
    return float(np.sqrt(np.mean((phases - phases.mean(axis=(0, 1))) ** 2)))


# --------------------------------------------------------------------------------------------- SSIM


@lru_cache(maxsize=4)
def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of the first two axes with the 1-D window ``g`` (float64).
    OpenCV filters with a border; cropping half the window from each side leaves exactly the
    pixels whose window lies inside the image."""
    import cv2  # in the app's dependencies (not scipy)

    r = len(g) // 2
    out = cv2.sepFilter2D(img, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
    return out[r:-r, r:-r]


def _ssim_map(a: np.ndarray, b: np.ndarray, peak: float) -> np.ndarray:
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    g = _gaussian_1d()
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a, g) - mu_aa
    var_b = _filter_valid(b * b, g) - mu_bb
    cov = _filter_valid(a * b, g) - mu_ab
    return ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """SSIM (Wang et al. 2004) of two H×W or H×W×C images; colour = mean over channels.
    Both sides must be at least 11 px. ``peak`` as in :func:`psnr`."""
    a, b = _check_pair(a, b, "ssim")
    if a.ndim not in (2, 3) or min(a.shape[:2]) < 11:
        raise ValueError(f"ssim: needs an H×W or H×W×C image of at least 11×11, got {a.shape}")
    if peak is None:
        peak = _peak_of(a)
    m = _ssim_map(a.astype(np.float64), b.astype(np.float64), float(peak))
    # Mean over the map of each channel, then over channels (equal-size maps: one mean).
    return float(m.mean())


# ----------------------------------------------------------------------------- Y channel and shave

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb_to_y(rgb: np.ndarray, as_uint8: bool = False) -> np.ndarray:
    """Luma of MATLAB ``rgb2ycbcr`` (BT.601, studio range): Y = 16 + (65.481R + 128.553G +
    24.966B) with R, G, B in [0, 1], on the 0..255 scale (16..235).

    uint8/uint16 input is read as 0..255 / 0..65535 and the result is float64 on the 0..255 scale;
    float input is taken as [0, 1] and the result is on the [0, 1] scale (16/255..235/255).
    ``as_uint8=True`` gives MATLAB's ``rgb2ycbcr(uint8)`` result: rounded to uint8.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y: needs an H×W×3 RGB image, got shape {rgb.shape}")
    unit = rgb.astype(np.float64) / _peak_of(rgb)
    y = 16.0 + unit @ _Y_WEIGHTS  # 0..255 scale
    if as_uint8:
        return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    if rgb.dtype in (np.uint8, np.uint16):
        return y
    return y / 255.0


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on every side (the SR evaluation convention)."""
    if border <= 0:
        return img
    if min(img.shape[:2]) <= 2 * border:
        raise ValueError(f"shave: image {img.shape[:2]} too small for a {border}-px border")
    return img[border:-border, border:-border]


def _to_y_uint8(img: np.ndarray) -> np.ndarray:
    # The SR tables compute MATLAB rgb2ycbcr on the uint8 images: Y rounded to uint8. A single
    # channel is taken to be Y already (0..255 uint8, or [0, 1] floats, quantised like a saved PNG).
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        if img.dtype != np.uint8:
            img = np.clip(np.floor(img.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return rgb_to_y(img, as_uint8=True)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(img.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR on the (uint8-rounded) Y channel with ``border`` px shaved, as the SR papers report.
    Inputs: RGB (uint8, or floats in [0, 1]) or a single Y channel (uint8 or [0, 1])."""
    return psnr(shave(_to_y_uint8(sr), border), shave(_to_y_uint8(hr), border), 255.0)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM on the (uint8-rounded) Y channel with ``border`` px shaved; inputs as :func:`psnr_y`."""
    return ssim(shave(_to_y_uint8(sr), border), shave(_to_y_uint8(hr), border), 255.0)


# -------------------------------------------------------------------------------------------- LPIPS


class Lpips:
    """LPIPS v0.1 (AlexNet) distance through the shipped ONNX model.

    ``distance(a, b)`` takes two RGB images H×W×3, or two batches N×H×W×3, uint8/uint16 or
    floats in [0, 1]; it returns a float for single images, an (N,) array for batches. Batches are
    run ``batch_size`` at a time. Lower = more similar; 0 for identical images.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 0, batch_size: int = 8):
        from app.core.onnx_session import OnnxModel  # onnxruntime only when LPIPS is used

        self.model = OnnxModel(Path(model_path) if model_path else DEFAULT_LPIPS_MODEL, threads=threads)
        self.batch_size = max(1, int(batch_size))

    @staticmethod
    def _to_input(x: np.ndarray) -> np.ndarray:
        unit = x.astype(np.float32) / np.float32(_peak_of(x)) if x.dtype in (np.uint8, np.uint16) else x.astype(np.float32)
        return np.ascontiguousarray((unit * 2.0 - 1.0).transpose(0, 3, 1, 2))

    def distance(self, a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
        a, b = _check_pair(a, b, "lpips")
        single = a.ndim == 3
        if single:
            a, b = a[None], b[None]
        if a.ndim != 4 or a.shape[3] != 3:
            raise ValueError(f"lpips: needs H×W×3 or N×H×W×3 RGB images, got {a.shape}")
        out = []
        for i in range(0, len(a), self.batch_size):
            feeds = {
                "in0": self._to_input(a[i : i + self.batch_size]),
                "in1": self._to_input(b[i : i + self.batch_size]),
            }
            out.append(self.model.run(feeds)[0].reshape(-1))
        d = np.concatenate(out).astype(np.float64)
        return float(d[0]) if single else d

    __call__ = distance


# --------------------------------------------------------------------------------------------- NIQE

_BLOCK = 96


@lru_cache(maxsize=2)
def _niqe_params(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: NIQE pristine-model file not found")
    with np.load(p) as d:
        return d["mu_pris_param"][0].copy(), d["cov_pris_param"].copy(), d["gaussian_window"].copy()


@lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape grid (0.2..10 step 0.001) and r(γ) = Γ(2/γ)² / (Γ(1/γ)Γ(3/γ)) on it."""
    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    g = np.vectorize(math.gamma)
    return gam, np.square(g(rec * 2)) / (g(rec) * g(rec * 3))


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape α, left β, right β).
    ``x`` is float32 and the moments are float32 means, as in the reference: flat regions give
    exact zeros there, and whether a value is 0, < 0 or > 0 changes the fit."""
    x = x.ravel()
    gam, r_gam = _aggd_table()
    with np.errstate(invalid="ignore", divide="ignore"):
        # An empty side gives NaN features (as the reference does); NIQE's nanmean skips them.
        neg = x[x < 0]
        pos = x[x > 0]
        left = np.sqrt(np.mean(neg * neg)) if neg.size else np.float32(np.nan)
        right = np.sqrt(np.mean(pos * pos)) if pos.size else np.float32(np.nan)
        g = left / right
        rhat = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
        rhatnorm = (rhat * (g**3 + 1) * (g + 1)) / ((g**2 + 1) ** 2)
    if np.isnan(rhatnorm):
        alpha = float(gam[0])  # numpy's argmin over NaNs: the first grid point
    else:
        alpha = float(gam[np.argmin((r_gam - rhatnorm) ** 2)])
    k = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, float(left) * k, float(right) * k


def _block_features(block: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd_fit(block)
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        # Products with the circularly shifted block: horizontal, vertical and both diagonals.
        alpha, bl, br = _aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (br - bl) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        feat.extend([alpha, mean, bl, br])
    return feat


def _convolve_nearest(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """True convolution (kernel flipped) with replicate padding, accumulated in float64 and
    returned in the input's dtype: scipy.ndimage.convolve(img, window, mode='nearest')."""
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    pad = np.pad(img.astype(np.float64), ((ph, ph), (pw, pw)), mode="edge")
    h, w = img.shape
    out = np.zeros((h, w), dtype=np.float64)
    flipped = window[::-1, ::-1]
    for i in range(kh):
        for j in range(kw):
            out += flipped[i, j] * pad[i : i + h, j : j + w]
    return out.astype(img.dtype)


def _niqe_features(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Patch features at two scales; ``img`` float32 grey levels (the reference works in float32)."""
    h, w = img.shape
    nbh, nbw = h // _BLOCK, w // _BLOCK
    img = img[: nbh * _BLOCK, : nbw * _BLOCK]
    per_scale = []
    for scale in (1, 2):
        mu = _convolve_nearest(img, window)
        sigma = np.sqrt(np.abs(_convolve_nearest(np.square(img), window) - np.square(mu)))
        mscn = (img - mu) / (sigma + 1)
        size = _BLOCK // scale
        feats = [
            _block_features(mscn[bh * size : (bh + 1) * size, bw * size : (bw + 1) * size])
            for bw in range(nbw)
            for bh in range(nbh)
        ]
        per_scale.append(np.array(feats))
        if scale == 1:
            img = (imresize(img.astype(np.float64) / 255.0, 0.5) * 255.0).astype(np.float32)
    return np.concatenate(per_scale, axis=1)


def _to_niqe_channel(img: np.ndarray, convert_to: str) -> np.ndarray:
    """The grey channel on the 0..255 scale, float32 as the reference computes it."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype == np.uint8:
        f = img.astype(np.float32)
    elif img.dtype == np.uint16:
        f = (img.astype(np.float64) / 257.0).astype(np.float32)
    else:
        f = (img.astype(np.float64) * 255.0).astype(np.float32)
    if f.ndim == 2:
        return f
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"niqe: needs an H×W×3 RGB or H×W grey image, got shape {img.shape}")
    unit = f / np.float32(255.0)
    if convert_to == "y":
        # float32 RGB · float64 weights (summed B, G, R as the BGR reference does), / 255 to float32.
        y = unit[:, :, ::-1] @ _Y_WEIGHTS[::-1] + 16.0
        return (y / 255.0).astype(np.float32) * np.float32(255.0)
    if convert_to == "gray":
        import cv2  # OpenCV's float32 BGR2GRAY is what the reference used

        return cv2.cvtColor(np.ascontiguousarray(unit[:, :, ::-1]), cv2.COLOR_BGR2GRAY) * np.float32(255.0)
    raise ValueError(f"niqe: convert_to must be 'y' or 'gray', not {convert_to!r}")


def niqe(
    img: np.ndarray,
    convert_to: str = "y",
    crop_border: int = 0,
    params_path: str | os.PathLike | None = None,
) -> float:
    """NIQE of one image (lower = more natural). RGB H×W×3 (uint8/uint16, or floats in [0, 1]) is
    reduced to the rgb2ycbcr Y channel (``convert_to='y'``) or BT.601 grey (``'gray'``); an H×W
    image is taken as grey levels as it is. Needs at least two 96×96 patches (192×96)."""
    mu_p, cov_p, window = _niqe_params(os.fspath(params_path or DEFAULT_NIQE_PARAMS))
    chan = _to_niqe_channel(img, convert_to)
    if crop_border:
        chan = shave(chan, crop_border)
    chan = np.round(chan)  # the reference rounds to integer grey levels, as MATLAB's uint8 would
    h, w = chan.shape
    if h < _BLOCK or w < _BLOCK or (h // _BLOCK) * (w // _BLOCK) < 2:
        raise ValueError(f"niqe: image {h}×{w} holds fewer than two {_BLOCK}×{_BLOCK} patches")
    feats = _niqe_features(chan, window)
    with np.errstate(invalid="ignore"):
        mu_d = np.nanmean(feats, axis=0)
    clean = feats[~np.isnan(feats).any(axis=1)]
    cov_d = np.cov(clean, rowvar=False)
    diff = mu_p - mu_d
    inv = np.linalg.pinv((cov_p + cov_d) / 2)
    return float(np.sqrt(diff @ inv @ diff))


def niqe_batch(images: Sequence[np.ndarray], convert_to: str = "y") -> list[float]:
    """NIQE of each image in turn."""
    return [niqe(im, convert_to) for im in images]
