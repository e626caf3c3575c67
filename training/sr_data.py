"""Super-resolution training data: Y-channel (LR, HR) patch pairs from ``sr/train`` (T91 + a BSD200
subset, the "291"-style set). Shared by SESR and FALSR.

The LR side is made exactly as the evaluation protocol makes its LR images (so training and test
see the same degradation): HR RGB uint8 → ``app.core.imresize.imresize(HR, 1/s)`` (MATLAB bicubic,
antialiased, rounded to uint8) → BT.601 Y. HR is modcropped to a multiple of ``s`` first.
As in the 291-set recipe, each image also enters at 0.8× and 0.6× (MATLAB bicubic) for more
variety of scale; patches get a random flip/rot90 (which commutes with the symmetric resizer).

The prepared pairs are cached in ``~/.cache/cfr-studio/sesr/`` (one ``.npz`` per scale).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.imresize import imresize
from app.core.io import load_image
from app.core.metrics import rgb_to_y

__all__ = ["DEFAULT_DATA", "CACHE_DIR", "train_files", "prepare_pairs", "PatchSampler", "y_channel"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CFR_DATA", ROOT.parent / "shared" / "data"))
CACHE_DIR = Path(os.environ.get("CFR_SESR_CACHE", Path.home() / ".cache" / "cfr-studio" / "sesr"))
SCALE_AUGMENT = (1.0, 0.8, 0.6)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y of an 8-bit RGB image, as float32 in [0, 1] (studio range 16/255 … 235/255)."""
    return (rgb_to_y(rgb) / 255.0).astype(np.float32)  # the evaluation's rgb2ycbcr luma


def train_files(data_dir: Path = DEFAULT_DATA) -> list[Path]:
    root = Path(data_dir) / "sr" / "train"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root}: no training images found")
    return files


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def make_pair(rgb_hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR Y, HR Y), float32 in [0, 1], from an 8-bit RGB HR image, by the test protocol."""
    hr = modcrop(rgb_hr, scale)
    lr = imresize(hr, 1.0 / scale)  # uint8 in, uint8 out: rounded like MATLAB
    return y_channel(lr), y_channel(hr)


@dataclass
class Pairs:
    lr: list[np.ndarray]
    hr: list[np.ndarray]
    scale: int

    @property
    def lr_pixels(self) -> int:
        return int(sum(a.size for a in self.lr))


def prepare_pairs(scale: int, data_dir: Path = DEFAULT_DATA, cache_dir: Path = CACHE_DIR,
                  scale_augment=SCALE_AUGMENT, files: list[Path] | None = None) -> Pairs:
    files = files if files is not None else train_files(data_dir)
    key = hashlib.sha1(
        repr((scale, tuple(scale_augment), [(p.name, p.stat().st_size) for p in files])).encode()
    ).hexdigest()[:10]
    cache = Path(cache_dir) / f"sr_pairs_x{scale}_{key}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            n = int(z["n"])
            return Pairs([z[f"lr{i}"] for i in range(n)], [z[f"hr{i}"] for i in range(n)], scale)
    lrs, hrs = [], []
    for path in files:
        rgb = load_image(path).rgb
        if rgb.dtype != np.uint8:
            rgb = (rgb.astype(np.float64) / 257.0).round().astype(np.uint8)
        for a in scale_augment:
            hr = rgb if a == 1.0 else imresize(rgb, a)
            if min(hr.shape[:2]) < 16 * scale:
                continue
            lr_y, hr_y = make_pair(hr, scale)
            lrs.append(lr_y)
            hrs.append(hr_y)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, n=len(lrs), **{f"lr{i}": a for i, a in enumerate(lrs)},
             **{f"hr{i}": a for i, a in enumerate(hrs)})
    os.replace(tmp, cache)
    return Pairs(lrs, hrs, scale)


class PatchSampler:
    """Random (LR, HR) patch batches: images drawn in proportion to their area, a random crop of
    ``patch``×``patch`` LR pixels (``scale``× that in HR), a random flip and rot90."""

    def __init__(self, pairs: Pairs, patch: int = 64, batch: int = 32, seed: int = 0):
        self.pairs, self.patch, self.batch = pairs, patch, batch
        self.rng = np.random.default_rng(seed)
        usable = [i for i, a in enumerate(pairs.lr) if min(a.shape) >= patch]
        if not usable:
            raise ValueError(f"no training image is at least {patch} LR pixels on each side")
        self.index = np.array(usable)
        area = np.array([pairs.lr[i].size for i in usable], dtype=np.float64)
        self.prob = area / area.sum()

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        s, p = self.pairs.scale, self.patch
        lr_b = np.empty((self.batch, 1, p, p), np.float32)
        hr_b = np.empty((self.batch, 1, p * s, p * s), np.float32)
        for b, i in enumerate(self.rng.choice(self.index, size=self.batch, p=self.prob)):
            lr, hr = self.pairs.lr[i], self.pairs.hr[i]
            y = int(self.rng.integers(0, lr.shape[0] - p + 1))
            x = int(self.rng.integers(0, lr.shape[1] - p + 1))
            lp, hp = lr[y:y + p, x:x + p], hr[y * s:(y + p) * s, x * s:(x + p) * s]
            k = int(self.rng.integers(0, 4))
            lp, hp = np.rot90(lp, k), np.rot90(hp, k)
            if self.rng.random() < 0.5:
                lp, hp = lp[:, ::-1], hp[:, ::-1]
            lr_b[b, 0], hr_b[b, 0] = lp, hp
        return lr_b, hr_b
