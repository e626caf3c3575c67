"""One photo, start to finish: detect → select → align → restore ×k → paste back (→ upscale).

    photo ─(upscale ×s)→ ─detect→ faces ─select→ ─align→ 256² crops ─restore k cycles→
          ─paste back (feathered, colour-matched, blended)→ composite

``Pipeline`` holds the three engines (a Restorer, a FaceDetector, optionally an Upscaler) and
exposes each step, so the GUI can run them one at a time (detect once, re-render with another k
or blend) and the batch and the CLI can call ``run`` or ``restore_file``. A Pipeline is NOT
thread-safe (its FaceDetector is not): one per thread; several may share one Restorer.

Upscaling: the whole photo is upscaled first, then the faces found on the original are scaled
by the same factor and cut from the upscaled photo, so the restored faces are pasted back at the
new resolution (the network sees as many face pixels as the bigger photo has). Detection runs on
the original: it is s² times cheaper and finds the same faces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from app.core import align
from app.core.align import Crop
from app.core.errors import CancelToken, CfrError, ImageError, ProgressFn, check_cancel
from app.core.faces import Face

__all__ = ["RestoreOptions", "FaceResult", "PhotoResult", "Pipeline", "restore_file", "parse_faces"]

STAGES = ("load", "detect", "align", "restore", "paste", "upscale", "save")


@dataclass
class RestoreOptions:
    k: Union[int, str] = 2  # cycles, or 'auto' (the fixed point, at most restorer.MAX_AUTO_CYCLES)
    faces: Union[str, list[int]] = "all"  # 'all' | 'largest' | indices (largest face first, from 0)
    min_face: int = 0  # faces narrower than this (box width, px of the original photo) are left alone
    blend: float = 1.0  # 1 = fully restored, 0 = the original
    per_face_k: Optional[dict[int, Union[int, str]]] = None  # face index → its own k
    upscale: Optional[int] = None  # 2 | 4: upscale the whole photo first
    upscale_model: Optional[Path] = None  # None = the shipped SESR model for that scale
    quality: int = 95  # JPEG/WebP quality of the written file (restore_file)


@dataclass
class FaceResult:
    index: int  # position in the detection order (largest first)
    face: Face  # in the coordinates of the output (i.e. scaled when upscaling)
    crop: Crop  # the aligned crop, cut from the photo being restored
    cycles: list[np.ndarray]  # each cycle's output, float32 256×256×3 in [0, 1]; [] if not selected
    selected: bool


@dataclass
class PhotoResult:
    photo: object  # the app.core.io.Photo as loaded (unchanged)
    faces: list[FaceResult]
    rgb: np.ndarray  # the composite, dtype of photo.rgb (s× larger when upscaled)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (STAGES)
    alpha: Optional[np.ndarray] = None  # the output's alpha (the photo's, scaled with it), or None
    warnings: list[str] = field(default_factory=list)

    def output_photo(self):
        """The result as a Photo carrying the original's metadata (what ``save_image`` takes)."""
        from app.core.io import Photo

        return Photo(rgb=self.rgb, alpha=self.alpha, meta=self.photo.meta)


def parse_faces(faces: Union[str, list[int], tuple[int, ...]]) -> Union[str, list[int]]:
    """'all' | 'largest' | '0,2' | [0, 2] → 'all' | 'largest' | [0, 2]; ValueError otherwise."""
    if isinstance(faces, str):
        text = faces.strip().lower()
        if text in ("all", "largest"):
            return text
        try:
            faces = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"faces must be 'all', 'largest' or numbers like 0,2; not {faces!r}") from None
        if not faces:
            raise ValueError("faces: no face numbers given")
    out = [int(i) for i in faces]
    if any(i < 0 for i in out):
        raise ValueError(f"face numbers start at 0; got {out}")
    return out


def _rgb_of(photo) -> np.ndarray:
    return photo.rgb if hasattr(photo, "rgb") else np.asarray(photo)


class Pipeline:
    """The engines for one thread. ``restorer`` None = the default CFRNet (opened when first
    needed), ``detector`` None = a FaceDetector (made when first needed), ``upscaler`` None =
    opened for the scale an option asks for."""

    def __init__(self, restorer=None, detector=None, upscaler=None) -> None:
        self.restorer = restorer
        self.detector = detector
        self.upscaler = upscaler

    # -- the steps ------------------------------------------------------------------------------

    def _detector(self):
        if self.detector is None:
            from app.core.faces import FaceDetector

            self.detector = FaceDetector()
        return self.detector

    def _restorer(self):
        if self.restorer is None:
            from app.core.restorer import Restorer

            self.restorer = Restorer()
        return self.restorer

    def _upscaler(self, scale: int, model: Optional[Path]):
        if scale not in (2, 4):
            raise CfrError(f"Upscaling is ×2 or ×4, not ×{scale}.")
        current = self.upscaler
        if current is not None and getattr(current, "scale", None) == scale and (
            model is None or Path(getattr(current, "path", "")) == Path(model)
        ):
            return current
        try:
            from app.core.upscaler import Upscaler, default_upscaler_path
        except ImportError as exc:  # the upscaler is an optional part of the engine
            raise CfrError(f"Upscaling is not available in this installation ({exc}).") from exc
        path = Path(model) if model is not None else default_upscaler_path(scale)
        threads = getattr(self.restorer, "threads", 0) if self.restorer is not None else 0
        up = Upscaler(path, threads=threads)
        if up.scale != scale:
            raise CfrError(f"The upscaling model '{path}' enlarges ×{up.scale}, but ×{scale} was asked for.")
        self.upscaler = up
        return up

    def detect(self, photo, cancel: CancelToken = None) -> list[Face]:
        """The faces in a Photo (or an H×W×3 array), largest first."""
        return self._detector().detect(_rgb_of(photo), cancel=cancel)

    def select(self, faces: list[Face], options: RestoreOptions) -> list[int]:
        """Indices (into ``faces``) of the faces to restore: by options.faces and options.min_face.
        Face numbers that do not exist are ignored (``run`` says so in its warnings)."""
        which = parse_faces(options.faces)
        if which == "all":
            chosen = list(range(len(faces)))
        elif which == "largest":
            chosen = list(range(min(1, len(faces))))
        else:
            chosen = sorted({i for i in which if i < len(faces)})
        if options.min_face:
            chosen = [i for i in chosen if faces[i].width >= options.min_face]
            if which == "largest":  # the largest face that is wide enough (faces are sorted)
                chosen = chosen[:1]
        return chosen

    def align(self, photo, faces: list[Face]) -> list[Crop]:
        """Each face cut onto the 256×256 template, in the photo's dtype. Aligned on the five
        ``landmarks``, exactly as the training pack aligns its faces, so the crops match."""
        rgb = _rgb_of(photo)
        return [align.align_face(rgb, f.landmarks) for f in faces]

    def composite(self, photo, crops: list[Crop], restored: list[np.ndarray], blend: float = 1.0) -> np.ndarray:
        """A copy of the photo with the restored faces pasted back (feathered, colour-matched,
        blended with the original by ``blend``). The photo itself is not touched."""
        if len(crops) != len(restored):
            raise ValueError(f"{len(crops)} crops but {len(restored)} restored faces")
        out = _rgb_of(photo).copy()
        for crop, face in zip(crops, restored):
            align.paste_back(out, crop, face, blend=blend)
        return out

    # -- the whole photo -------------------------------------------------------------------------

    def run(
        self,
        photo,
        options: Optional[RestoreOptions] = None,
        progress: Optional[ProgressFn] = None,
        cancel: CancelToken = None,
    ) -> PhotoResult:
        """Restore the selected faces of ``photo`` (an app.core.io.Photo). Raises Cancelled (and
        returns nothing) if ``cancel`` fires; the photo is never modified."""
        options = options or RestoreOptions()
        if not 0.0 <= float(options.blend) <= 1.0:
            raise CfrError(f"blend must be between 0 and 1, not {options.blend}")
        timings = {s: 0.0 for s in STAGES}
        warnings: list[str] = []
        rgb = _rgb_of(photo)
        alpha = getattr(photo, "alpha", None)
        scale = int(options.upscale) if options.upscale else 1
        step, total = 0, 2 + (1 if scale > 1 else 0)  # detect, (upscale,) paste; + one per face

        def report(message: str) -> None:
            if progress is not None:
                progress(step, total, message)

        check_cancel(cancel)
        report("Finding faces")
        t = time.perf_counter()
        faces = self.detect(rgb, cancel=cancel)
        timings["detect"] = time.perf_counter() - t
        chosen = self.select(faces, options)
        if isinstance(parse_faces(options.faces), list):
            missing = [i for i in parse_faces(options.faces) if i >= len(faces)]
            if missing:
                warnings.append(
                    f"face number(s) {', '.join(map(str, missing))} asked for, but only {len(faces)} "
                    f"face(s) were found (numbered from 0)"
                )
        total += len(chosen)
        step += 1
        check_cancel(cancel)

        if scale > 1:
            report(f"Upscaling ×{scale}")
            t = time.perf_counter()
            up = self._upscaler(scale, options.upscale_model)
            rgb = up.upscale(rgb, cancel=cancel)
            if alpha is not None:
                alpha = _resize_like(alpha, rgb.shape[1], rgb.shape[0])
            faces = [f.scaled(scale) for f in faces]
            timings["upscale"] = time.perf_counter() - t
            step += 1
            check_cancel(cancel)

        t = time.perf_counter()
        crops = self.align(rgb, faces)
        timings["align"] = time.perf_counter() - t

        results = [FaceResult(index=i, face=f, crop=c, cycles=[], selected=False) for i, (f, c) in enumerate(zip(faces, crops))]
        if chosen:
            restorer = self._restorer()
            per_face = options.per_face_k or {}
            t = time.perf_counter()
            for n, i in enumerate(chosen):
                k = per_face.get(i, options.k)
                report(f"Restoring face {n + 1} of {len(chosen)} (k = {k})")
                results[i].cycles = list(restorer.restore(crops[i].image, k, cancel=cancel))
                results[i].selected = True
                step += 1
            timings["restore"] = time.perf_counter() - t
        check_cancel(cancel)

        report("Pasting the faces back")
        t = time.perf_counter()
        picked = [r for r in results if r.selected]
        composite = self.composite(rgb, [r.crop for r in picked], [r.cycles[-1] for r in picked], options.blend)
        timings["paste"] = time.perf_counter() - t
        step += 1
        report("Done")
        return PhotoResult(photo=photo, faces=results, rgb=composite, timings=timings, alpha=alpha, warnings=warnings)


def _resize_like(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    out = cv2.resize(plane, (width, height), interpolation=cv2.INTER_CUBIC)
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        out = np.clip(out, info.min, info.max).astype(plane.dtype)
    return out


def restore_file(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    options: Optional[RestoreOptions] = None,
    pipeline: Optional[Pipeline] = None,
    overwrite: bool = False,
    progress: Optional[ProgressFn] = None,
    cancel: CancelToken = None,
) -> PhotoResult:
    """Load ``input_path``, restore its faces, write ``output_path`` (atomically; the format from
    its suffix; EXIF, ICC, bit depth and alpha carried over). A photo with no face (or none
    selected) is written unchanged. On cancel or error nothing is written. The warnings of the
    load, the run and the save are in ``result.photo.meta.warnings``."""
    from app.core.io import load_image, save_image

    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.exists() and not overwrite:  # fail before the work, not after it
        raise ImageError(f"'{output_path}' already exists and was not overwritten (choose another name).")
    pipeline = pipeline or Pipeline()
    options = options or RestoreOptions()
    t = time.perf_counter()
    photo = load_image(input_path)
    t_load = time.perf_counter() - t
    result = pipeline.run(photo, options, progress=progress, cancel=cancel)
    result.timings["load"] = t_load
    check_cancel(cancel)
    t = time.perf_counter()
    saved = save_image(output_path, result.output_photo(), overwrite=overwrite,
                       quality=int(options.quality))
    result.timings["save"] = time.perf_counter() - t
    photo.meta.warnings.extend(result.warnings + list(saved))
    return result
