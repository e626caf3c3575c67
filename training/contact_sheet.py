"""Contact sheet of real old photographs restored by the whole app pipeline (issue 10): one row per
face (or per photo), columns input | k=1 | k=2 | k=3.

Each photo in ``photos/real-old`` goes through ``app.core.pipeline.Pipeline.run`` (the app's
detector, aligner, CFRNet restorer and paste-back) with k = 3; every cycle's output is kept, so
k = 1, 2, 3 come from the same run.
- faces sheet (the OUT path): the aligned 256² input crop and the restored crop of cycles 1–3 for
  the largest ``--faces-per-photo`` faces of each photo;
- photos sheet (``--photos-sheet PATH``): the whole photo, as is and with the faces pasted back at
  k = 1, 2, 3, scaled to ``--photo-height``.

    python -m training.contact_sheet OUT.png [--model models/cfrnet_int8.onnx] [--photos-sheet P.png]
        [--faces-per-photo 2] [--cell 192] [--columns 3] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from app.core.align import in_print_tone
from app.core.io import load_image, save_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("CFR_DATA", ROOT.parent / "shared" / "data"))
KS = (1, 2, 3)
LABEL_H = 22
BG = (32, 32, 32)


def _u8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.clip(np.floor(a / 257.0 + 0.5), 0, 255).astype(np.uint8)
    return np.clip(np.floor(a.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _fit(img: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Scale to ``height`` (and at most ``width``), area filter when shrinking."""
    h, w = img.shape[:2]
    s = height / h
    if width is not None:
        s = min(s, width / w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def _pad_width(img: np.ndarray, width: int) -> np.ndarray:
    out = np.full((img.shape[0], width, 3), BG, np.uint8)
    x = (width - img.shape[1]) // 2
    out[:, x : x + img.shape[1]] = img
    return out


def _label(width: int, text: str) -> np.ndarray:
    bar = np.full((LABEL_H, width, 3), BG, np.uint8)
    cv2.putText(bar, text, (4, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
    return bar


def _row(cells: list[np.ndarray], caption: str, gap: int = 4) -> np.ndarray:
    h = max(c.shape[0] for c in cells)
    parts = []
    for c in cells:
        pad = np.full((h, c.shape[1], 3), BG, np.uint8)
        pad[: c.shape[0]] = c
        parts += [pad, np.full((h, gap, 3), BG, np.uint8)]
    body = np.concatenate(parts[:-1], axis=1)
    return np.concatenate([_label(body.shape[1], caption), body], axis=0)


def _stack(rows: list[np.ndarray], header: list[str], col_w: list[int], gap: int = 4) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    head = np.full((LABEL_H + 4, width, 3), BG, np.uint8)
    x = 0
    for text, w in zip(header, col_w):
        cv2.putText(head, text, (x + 4, LABEL_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        x += w + gap
    out = [head]
    for r in rows:
        pad = np.full((r.shape[0], width, 3), BG, np.uint8)
        pad[:, : r.shape[1]] = r
        out += [pad, np.full((gap, width, 3), BG, np.uint8)]
    return np.concatenate(out, axis=0)


def _split(rows: list[np.ndarray], n: int) -> list[list[np.ndarray]]:
    """``rows`` cut into ``n`` consecutive runs of about equal height."""
    n = max(1, min(n, len(rows)))
    total = sum(r.shape[0] for r in rows)
    chunks, current, acc = [], [], 0
    for r in rows:
        if current and acc + r.shape[0] / 2 > total * (len(chunks) + 1) / n and len(chunks) < n - 1:
            chunks.append(current)
            current = []
        current.append(r)
        acc += r.shape[0]
    chunks.append(current)
    return chunks


def _columns(sheets: list[np.ndarray], gap: int = 16) -> np.ndarray:
    h = max(s.shape[0] for s in sheets)
    parts = []
    for s in sheets:
        pad = np.full((h, s.shape[1], 3), BG, np.uint8)
        pad[: s.shape[0]] = s
        parts += [pad, np.full((h, gap, 3), BG, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def photo_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"})
    if not files:
        raise FileNotFoundError(f"{folder}: no photos found")
    return files


def build_sheets(files: list[Path], model: Path | None, threads: int, faces_per_photo: int, cell: int,
                 photo_height: int, want_photos: bool, columns: int = 1) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    from app.core.pipeline import Pipeline, RestoreOptions
    from app.core.restorer import Restorer

    pipeline = Pipeline(restorer=Restorer(model, threads=threads))
    photo_width = photo_height * 3 // 2  # landscape photos are fitted into this, portraits centred
    options = RestoreOptions(k=max(KS), faces="all")
    face_rows, photo_rows, notes = [], [], []
    t0 = time.time()
    for n, path in enumerate(files, 1):
        photo = load_image(path)
        t = time.time()
        result = pipeline.run(photo, options)
        picked = [r for r in result.faces if r.selected]
        notes.append(f"{path.name}: {len(result.faces)} face(s), {time.time() - t:.1f} s")
        print(f"[{n}/{len(files)}] {notes[-1]} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        for r in picked[:faces_per_photo]:
            # each cycle as paste-back uses it: a B&W or toned print keeps its own colour
            original = _u8(r.crop.image).astype(np.float32) / 255
            cells = [_fit(_u8(r.crop.image), cell)] + [
                _fit(_u8(np.clip(in_print_tone(r.cycles[k - 1], original), 0, 1)), cell) for k in KS]
            face_rows.append(_row(cells, f"{path.stem}  face {r.index} ({r.face.width:.0f} px wide)"))
        if not picked:
            face_rows.append(_row([_fit(_u8(photo.rgb), cell, 4 * cell)], f"{path.stem}: no face found"))
        if want_photos:
            versions = [_u8(photo.rgb)]
            for k in KS:
                restored = [r.cycles[k - 1] for r in picked]
                versions.append(_u8(pipeline.composite(photo.rgb, [r.crop for r in picked], restored)))
            cells = [_pad_width(_fit(v, photo_height, photo_width), photo_width) for v in versions]
            photo_rows.append(_row(cells, f"{path.stem}: {len(picked)} face(s) restored"))
    faces_sheet = _columns([_stack(chunk, ["input"] + [f"k={k}" for k in KS], [cell] * 4)
                            for chunk in _split(face_rows, columns)])
    photos_sheet = None
    if want_photos:
        photos_sheet = _stack(photo_rows, ["input"] + [f"k={k}" for k in KS], [photo_width] * 4)
    return faces_sheet, photos_sheet, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the faces contact sheet (PNG)")
    ap.add_argument("--model", type=Path, default=None, help="CFRNet ONNX (default: the app's INT8 model)")
    ap.add_argument("--photos", type=Path, default=DEFAULT_DATA / "photos" / "real-old")
    ap.add_argument("--photos-sheet", type=Path, default=None, help="also write whole-photo rows here")
    ap.add_argument("--faces-per-photo", type=int, default=2)
    ap.add_argument("--cell", type=int, default=192, help="face cell size in px")
    ap.add_argument("--photo-height", type=int, default=256)
    ap.add_argument("--columns", type=int, default=3, help="face rows wrapped into this many columns")
    ap.add_argument("--limit", type=int, default=None, help="first N photos")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    files = photo_files(args.photos)[: args.limit]
    faces_sheet, photos_sheet, notes = build_sheets(
        files, args.model, args.threads, args.faces_per_photo, args.cell, args.photo_height,
        args.photos_sheet is not None, args.columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(args.out, faces_sheet, overwrite=True)
    print(f"wrote {args.out} ({faces_sheet.shape[1]}×{faces_sheet.shape[0]})")
    if photos_sheet is not None:
        args.photos_sheet.parent.mkdir(parents=True, exist_ok=True)
        save_image(args.photos_sheet, photos_sheet, overwrite=True)
        print(f"wrote {args.photos_sheet} ({photos_sheet.shape[1]}×{photos_sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
