"""Build the aligned face packs that CFRNet trains and validates on.

A pack is one uint8 .npy file (N×256×256×3 RGB, read with mmap so training starts at once) plus
a .json beside it: the source file of each row, which rows are high-resolution ("hq": CelebA-HQ,
FFHQ, selfies: the sharp faces, over-sampled in training), how many files were dropped and why.

``--method aligned`` (the real one) runs the APP's detector and aligner (app.core.faces.FaceDetector,
app.core.align.align_face), so training crops are made exactly as the app makes them at run time.
UTKFace chips are tight 200² crops: the image is reflect-padded by half its size on every side
before detection, which lets the detector see a whole face and lets the warp sample mirrored
border instead of black. ``--method resize`` (a stand-in used before the detector existed)
resizes the centre square to 256².

    python -m training.face_pack --split train --out ~/.cache/cfr-studio/faces_train_256.npy
    python -m training.face_pack --split val --out ~/.cache/cfr-studio/faces_val_256.npy
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CACHE = Path(os.path.expanduser("~/.cache/cfr-studio"))
HQ_DIRS = {"celebahq", "ffhq", "selfies"}
EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTS)


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def resize_crop(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(sq, (size, size), interpolation=interp)


class Aligner:
    """Detect the largest face on a reflect-padded copy and align it with the app's aligner."""

    def __init__(self, pad: float = 0.5):
        from app.core.faces import FaceDetector

        self.detector = FaceDetector()
        self.pad = pad

    def __call__(self, rgb: np.ndarray, size: int = 256) -> np.ndarray | None:
        from app.core.align import align_face

        h, w = rgb.shape[:2]
        p = int(round(self.pad * max(h, w)))
        padded = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REFLECT_101)
        # these photos hold one face filling most of the frame: searching only for faces at least
        # 0.4× the photo's side skips the small-face tiles (5× less detector time)
        self.detector.min_face = max(24, int(0.4 * max(h, w)))
        faces = self._inside(self.detector.detect(padded), p, w, h)
        if not faces:  # a harder face (large pose, dark): the full multi-scale search
            self.detector.min_face = None
            faces = self._inside(self.detector.detect(padded), p, w, h)
        if not faces:
            return None
        return align_face(padded, faces[0].landmarks, size).image

    @staticmethod
    def _inside(faces, p: int, w: int, h: int):
        # mirrored copies can be detected too: keep faces whose centre is inside the original
        return [f for f in faces
                if p <= (f.box[0] + f.box[2]) / 2 <= p + w and p <= (f.box[1] + f.box[3]) / 2 <= p + h]

    def close(self):
        self.detector.close()


def build(split_dir: Path, out: Path, method: str, size: int = 256, limit: int | None = None) -> dict:
    files = list_images(split_dir)[:limit]
    aligner = Aligner() if method == "aligned" else None
    rows, names, hq, dropped = [], [], [], []
    t0 = time.time()
    for i, path in enumerate(files):
        rel = str(path.relative_to(split_dir))
        try:
            rgb = load_rgb(path)
        except Exception as e:  # noqa: BLE001 - a bad file is recorded and skipped
            dropped.append({"file": rel, "why": f"unreadable: {e}"})
            continue
        crop = aligner(rgb, size) if aligner else resize_crop(rgb, size)
        if crop is None:
            dropped.append({"file": rel, "why": "no face detected"})
            continue
        rows.append(np.ascontiguousarray(crop, dtype=np.uint8))
        names.append(rel)
        hq.append(rel.split("/")[0] in HQ_DIRS)
        if (i + 1) % 250 == 0:
            print(f"{i + 1}/{len(files)} kept {len(rows)} dropped {len(dropped)} "
                  f"{time.time() - t0:.0f}s", flush=True)
    if aligner:
        aligner.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    arr = np.stack(rows) if rows else np.zeros((0, size, size, 3), np.uint8)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, out)
    meta = {"method": method, "split_dir": str(split_dir), "size": size, "count": len(rows),
            "files_seen": len(files), "dropped": len(dropped), "dropped_files": dropped,
            "hq_count": int(sum(hq)), "names": names, "hq": hq,
            "seconds": round(time.time() - t0, 1)}
    meta_path = out.with_suffix(".json")
    meta_path.with_name(meta_path.name + ".tmp").write_text(json.dumps(meta))
    os.replace(meta_path.with_name(meta_path.name + ".tmp"), meta_path)
    return meta


def load_pack(path: Path) -> tuple[np.ndarray, dict]:
    """The pack (memory-mapped) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face pack not found: {path} (build it with training/face_pack.py)")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return np.load(path, mmap_mode="r"), meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", choices=["train", "val"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--method", choices=["aligned", "resize"], default="aligned")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    meta = build(a.data / "faces" / a.split, a.out, a.method, limit=a.limit)
    print(f"{a.out}: {meta['count']} faces ({meta['hq_count']} hq), dropped {meta['dropped']} "
          f"of {meta['files_seen']}, {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
