"""Synthetic degradation of old photographs (numpy + OpenCV), random per sample and seeded.

``degrade(image, rng)`` takes a clean H×W×3 uint8 RGB face and returns a degraded one of the same
shape and dtype. Every random choice comes from ``rng`` (a numpy Generator), so a seed reproduces
the result exactly. ``degrade_eval_set(images, seed)`` gives each image its own stream
(``default_rng([seed, index])``), so an evaluation set does not depend on the order or number of
images processed before it. The evaluation script imports these two: keep them stable.

The chain follows a print's life: the lens/print blurs it, a small print loses resolution, the
dyes fade or turn sepia (or it was black-and-white), film grain and scanner noise add up, the scan
is saved as JPEG, and it is finally enlarged back to the crop size. Ranges are in RANGES (the model
card quotes them). Pixel-scale parameters (blur, down-sampling) are in pixels of the input image,
so a 128² training crop and a 256² evaluation face get the same kind of damage.
"""

from __future__ import annotations

import cv2
import numpy as np

# Probability of each step and its parameter range (documented in models/MODEL_CARD.md).
RANGES = {
    "blur": {"p": 0.9, "kinds": "gaussian 0.5, motion 0.25, defocus 0.25",
             "gaussian_sigma": (0.3, 3.0), "motion_length": (3, 15), "defocus_radius": (1.0, 4.0)},
    "downsample": {"p": 0.8, "factor": (1.0, 8.0), "log_uniform": True,
                   "interpolation": "area | linear | cubic, back up with linear | cubic"},
    "fade": {"p": 0.4, "amount": (0.05, 0.4), "gamma": (0.7, 1.4)},
    "tone": {"p_grey": 0.15, "p_sepia": 0.10, "sepia_strength": (0.4, 1.0)},
    "film_grain": {"p": 0.3, "sigma": (0.01, 0.06), "grain_size_px": (0.5, 1.5)},
    "gaussian_noise": {"p": 0.5, "sigma_255": (1.0, 20.0), "p_grey_noise": 0.4},
    "poisson_noise": {"p": 0.25, "peak": (100.0, 2000.0), "log_uniform": True},
    "jpeg": {"p": 0.8, "quality": (20, 95)},
    "scratches_dust": {"p": 0.1, "lines": (1, 4), "specks": (0, 30)},
}

_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]],
                  dtype=np.float32)


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = RANGES["blur"]
    kind = rng.choice(3, p=[0.5, 0.25, 0.25])
    if kind == 0:
        s = rng.uniform(*r["gaussian_sigma"])
        return cv2.GaussianBlur(img, (0, 0), s, borderType=cv2.BORDER_REFLECT)
    if kind == 1:
        length = int(rng.integers(r["motion_length"][0], r["motion_length"][1] + 1))
        angle = rng.uniform(0, 180)
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
        k = cv2.warpAffine(k, rot, (length, length), flags=cv2.INTER_LINEAR)
        k /= max(k.sum(), 1e-6)
        return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)
    rad = rng.uniform(*r["defocus_radius"])
    n = int(np.ceil(rad)) * 2 + 1
    yy, xx = np.mgrid[:n, :n] - n // 2
    k = np.clip(rad + 0.5 - np.sqrt(xx**2 + yy**2), 0, 1).astype(np.float32)  # antialiased disk
    k /= k.sum()
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random old-photo degradation of a clean uint8 RGB image (H×W×3) → uint8, same shape."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"degrade needs an H×W×3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    x = image.astype(np.float32) / 255.0

    if rng.random() < RANGES["blur"]["p"]:
        x = _blur(x, rng)

    small = (w, h)
    if rng.random() < RANGES["downsample"]["p"]:
        lo, hi = RANGES["downsample"]["factor"]
        f = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        small = (max(4, int(round(w / f))), max(4, int(round(h / f))))
        interp = [cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC][int(rng.integers(3))]
        x = cv2.resize(x, small, interpolation=interp)

    if rng.random() < RANGES["fade"]["p"]:
        r = RANGES["fade"]
        a = rng.uniform(*r["amount"])
        x = np.power(np.clip(x, 0, 1), rng.uniform(*r["gamma"]))
        paper = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.8, 1.0)], np.float32)
        x = x * (1 - a) + a * paper * rng.uniform(0.6, 1.0)  # washed out towards a yellowed paper

    u = rng.random()
    if u < RANGES["tone"]["p_grey"]:
        g = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = np.repeat(g[..., None], 3, axis=2)
    elif u < RANGES["tone"]["p_grey"] + RANGES["tone"]["p_sepia"]:
        s = rng.uniform(*RANGES["tone"]["sepia_strength"])
        x = (1 - s) * x + s * np.clip(x @ _SEPIA.T, 0, 1)

    if rng.random() < RANGES["film_grain"]["p"]:
        r = RANGES["film_grain"]
        grain = rng.standard_normal(x.shape[:2]).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), rng.uniform(*r["grain_size_px"]))
        grain /= max(float(grain.std()), 1e-6)
        x = x + rng.uniform(*r["sigma"]) * grain[..., None] * (0.5 + np.sqrt(np.clip(x, 0, 1)))

    if rng.random() < RANGES["gaussian_noise"]["p"]:
        r = RANGES["gaussian_noise"]
        sigma = rng.uniform(*r["sigma_255"]) / 255.0
        if rng.random() < r["p_grey_noise"]:
            n = rng.standard_normal(x.shape[:2]).astype(np.float32)[..., None]
        else:
            n = rng.standard_normal(x.shape).astype(np.float32)
        x = x + sigma * n

    if rng.random() < RANGES["poisson_noise"]["p"]:
        lo, hi = RANGES["poisson_noise"]["peak"]
        peak = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        x = rng.poisson(np.clip(x, 0, 1) * peak).astype(np.float32) / peak

    x8 = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)

    if rng.random() < RANGES["jpeg"]["p"]:
        q = int(rng.integers(RANGES["jpeg"]["quality"][0], RANGES["jpeg"]["quality"][1] + 1))
        ok, buf = cv2.imencode(".jpg", x8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            x8 = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])

    if small != (w, h):
        interp = [cv2.INTER_LINEAR, cv2.INTER_CUBIC][int(rng.integers(2))]
        x8 = cv2.resize(x8, (w, h), interpolation=interp)

    if rng.random() < RANGES["scratches_dust"]["p"]:
        x8 = _scratches(x8, rng)
    return x8


def _scratches(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thin bright or dark lines and specks, as on a scratched, dusty print."""
    out = img.copy()
    h, w = img.shape[:2]
    r = RANGES["scratches_dust"]
    for _ in range(int(rng.integers(r["lines"][0], r["lines"][1] + 1))):
        p0 = (int(rng.integers(w)), int(rng.integers(h)))
        p1 = (int(rng.integers(w)), int(rng.integers(h)))
        v = int(rng.choice([rng.integers(200, 256), rng.integers(0, 50)]))
        cv2.line(out, p0, p1, (v, v, v), 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(r["specks"][0], r["specks"][1] + 1))):
        v = int(rng.choice([rng.integers(200, 256), rng.integers(0, 50)]))
        cv2.circle(out, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(1, 3)),
                   (v, v, v), -1, cv2.LINE_AA)
    return out


def degrade_eval_set(images, seed: int = 0) -> list[np.ndarray]:
    """Degrade a list of clean uint8 images reproducibly: image i uses ``default_rng([seed, i])``."""
    return [degrade(img, np.random.default_rng([seed, i])) for i, img in enumerate(images)]
