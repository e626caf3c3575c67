"""Face detection and five landmarks per face, with MediaPipe's legacy solutions (0.10.21).

Why it is more than one call to MediaPipe: the detector letterboxes the whole frame into 128²
(short-range model) or 192² (full-range model) pixels, so on a large scan it only sees faces that
are a sizeable part of the frame. A group photo of 30 people with faces of 30–60 px would come
back empty. So the frame is searched as a pyramid of tiles:

* the whole frame, with both models (big portraits, close-ups);
* square tiles of side T, 2T, 4T, … (one octave per level) cut from the frame downscaled so that
  each tile is exactly the short-range model's 128² input. On old group photos the short-range
  model at that scale found about 40 % more faces than the full-range one on 192² tiles, at a
  lower cost per tile (2 ms against 5.5 ms; measured on the photos in data/photos/real-old). It
  finds faces down to ~1/7 of its input (18 px), so the finest tile side is T = 7 × ``min_face``.
  Neighbouring tiles overlap by 30 % (≥ 2/7), so every face too large to lie whole inside some
  tile of one level is large enough for the next; detections cut by an inner tile border are
  dropped (the neighbour has them whole).
* all detections merged with non-maximum suppression; a doubtful one (score < 0.75) is kept only
  if confirmed: by face mesh on a close crop (faces ≥ ``mesh_min_face``) or by a second look of
  the detector at the face enlarged to half its input. Busy textures (leaves, hats, hands) score
  0.5–0.7 on small tiles; this removes most of them.

The cost is proportional to the number of finest-level tiles, i.e. to area / ``min_face``². By
default ``min_face`` is 24 px for photos up to 1,536 px on the long side and 1/64 of the long side
above that (62 px on a 4000×3000 frame, where a 600 dpi scan of a 7-inch print would need 64
people side by side to get smaller faces): about 180 tiles of ~1.7 ms CPU on a 12 MP frame. Pass
``min_face=24`` to search a large frame down to 24 px, at about 6× that cost (1,175 tiles).

Speed (benchmarks/bench_detect.py): tiles with no contrast at all (no 8×8 window with a grey-level
std of 6, less on a faded photo) are not searched (blank sky, walls, mounts: nothing there can be a
face; no face was lost on the 40 old photos). With ``threads=2`` (the default on 2+ cores) a helper
thread with its own graphs takes tiles and face confirmations from the same queue while the
calling thread does the full-frame pass and then joins in: MediaPipe runs the models on the graphs'
own threads with the GIL released, so the two overlap; the faces found are exactly those of one
thread.

Landmarks (DESIGN.md §2): eye on the image's left, eye on the image's right, nose tip, mouth corner
left, mouth corner right, in image pixels. The detector gives the eyes, the nose tip and the mouth
*centre*; faces wide enough (``mesh_min_face``) are refined with face mesh on a crop around the
face, which gives the eye centres, nose tip and the real mouth corners. For the other faces the
two corners are *derived* from the four detector points: the similarity that takes the four points
onto the four-point template (mouth centre last) is inverted and the template's mouth corners are
mapped back into the image, then shifted so their midpoint is the detected mouth centre. Every
Face carries five points and every consumer aligns with them (the pipeline and the training
pack alike, so their crops match); that differs from a four-point fit by under a pixel on the
crop. ``Face.alignment_points()`` gives the measured points only (four for a 'detector' face).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from app.core import align
from app.core.errors import CancelToken, check_cancel
from app.core.native_log import quiet_native_stderr

__all__ = ["Face", "FaceDetector", "to_uint8_rgb"]

_FULL_INPUT = 192  # full-range model input side
_SHORT_INPUT = 128  # short-range model input side
_TILE_PER_FACE = 7  # tile side / smallest face searched for at that level (18 of 128 px)
_OVERLAP = 0.3  # ≥ 2 / _TILE_PER_FACE: a face too big to be whole in some tile of a level is
# big enough for the next level
_FLAT_STD = 6.0  # tiles with no 8×8 window above this grey-level std are not searched
_FLAT_REL = 0.08  # ... or above this fraction of the photo's own local contrast (99th percentile)
_MIN_PARALLEL_TILES = 12  # fewer tiles than this are not worth a second thread
_MIN_PARALLEL_FACES = 2  # a face's confirmation (mesh or second look) costs 2-10 ms
_MESH_OPTIONS = dict(static_image_mode=True, max_num_faces=3, refine_landmarks=False, min_detection_confidence=0.3)
_SURE_SCORE = 0.75  # detections below this get a second look

# Face mesh indices (subject's right eye is on the image's left for an unmirrored photo).
_MESH_EYE_IMAGE_LEFT = (33, 160, 158, 133, 153, 144)  # the six dlib-style eye contour points
_MESH_EYE_IMAGE_RIGHT = (362, 385, 387, 263, 373, 380)
_MESH_NOSE_TIP = 1
_MESH_MOUTH_LEFT = 61
_MESH_MOUTH_RIGHT = 291


@dataclass
class Face:
    """One detected face. ``box`` is (x0, y0, x1, y1) in image pixels; ``landmarks`` is 5×2
    float64 in image pixels (see the module doc for the order); ``source`` is 'mesh' when face
    mesh gave the points, 'detector' when they are the detector's (mouth corners derived)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    source: str

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return (0.5 * (self.box[0] + self.box[2]), 0.5 * (self.box[1] + self.box[3]))

    def alignment_points(self) -> np.ndarray:
        """The measured points only: all five from the mesh; the detector's own four (eyes, nose,
        mouth centre = midpoint of the derived corners) otherwise. (The app aligns on the five
        ``landmarks``; this is for a caller that wants no derived point in its fit.)"""
        if self.source == "mesh":
            return self.landmarks
        return np.vstack([self.landmarks[:3], self.landmarks[3:5].mean(0)])

    def scaled(self, factor: float) -> "Face":
        """The same face in a photo resized by ``factor`` (e.g. after upscaling ×2).
        Pixel centres map as p' = (p + 0.5)·f − 0.5."""
        box = tuple(float((v + 0.5) * factor - 0.5) for v in self.box)
        return Face(box=box, score=self.score, landmarks=(self.landmarks + 0.5) * factor - 0.5, source=self.source)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous H×W×3 uint8 RGB view of ``image`` for the detector: grey (H×W or H×W×1) is
    repeated into three channels, alpha dropped, 16 bits reduced to 8, float [0, 1] scaled."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}")
    return np.ascontiguousarray(a)


@dataclass
class _Raw:
    """A detection before merging: box and 4 keypoints (eye L, eye R, nose, mouth centre) in
    image pixels, the level's scale (tile pixels per image pixel, to prefer sharper views)."""

    box: np.ndarray  # x0, y0, x1, y1
    score: float
    points: np.ndarray  # 4×2
    px_per_face: float  # the face's width in detector-input pixels


class FaceDetector:
    """Finds faces and their five landmarks in an RGB photo. NOT thread-safe (MediaPipe graphs
    keep state): make one per thread. Call ``close()`` (or use ``with``) to free the graphs and
    the helper thread. ``threads`` (default: 2 where the process may use 2 cores) is how many
    threads share the tiles of one ``detect``; the faces found do not depend on it."""

    def __init__(
        self,
        min_score: float = 0.5,
        refine_with_mesh: bool = True,
        min_face: int | None = None,
        mesh_min_face: int = 40,
        threads: int | None = None,
    ) -> None:
        # MediaPipe's native start-up messages are kept off the terminal (app.core.native_log):
        # each graph is started here on a blank frame (where TensorFlow Lite announces itself),
        # and detects stay quiet until one finds a face (the face mesh's first landmarks warn once)
        self._quiet_native = True
        with quiet_native_stderr():
            self._build_graphs(min_score, refine_with_mesh, min_face, mesh_min_face, threads)

    def _build_graphs(self, min_score, refine_with_mesh, min_face, mesh_min_face, threads) -> None:
        # imported here so that importing app.core stays cheap for code that never detects
        import mediapipe as mp

        self.min_score = float(min_score)
        self.refine_with_mesh = bool(refine_with_mesh)
        self.min_face = min_face
        self.mesh_min_face = int(mesh_min_face)
        # tiles are shared between this many threads (each with its own graph): 2 where the
        # process may use 2 cores or more
        self.threads = max(1, min(2, threads if threads is not None else _usable_cpus()))
        # the helper thread and its own graphs
        self._short_helper = self._mesh_helper = None
        self._pool: ThreadPoolExecutor | None = None
        fd = mp.solutions.face_detection
        # the detectors run at a lower threshold; min_score is applied after merging, so a face
        # seen weakly in one tile and strongly in another keeps its best score
        self._full = fd.FaceDetection(min_detection_confidence=min(0.3, self.min_score), model_selection=1)
        self._short = fd.FaceDetection(min_detection_confidence=min(0.3, self.min_score), model_selection=0)
        self._mesh = None
        if self.refine_with_mesh:
            self._mesh = mp.solutions.face_mesh.FaceMesh(**_MESH_OPTIONS)
        for graph in (self._full, self._short, self._mesh):
            _start(graph)
        if self.threads >= 2:
            # made now rather than in the first detect: building graphs holds the GIL (~25 ms
            # CPU), which the GUI's thread should not feel in the middle of its work
            self._helper_graphs(mesh=True)

    # -- public -------------------------------------------------------------------------------

    def detect(self, image: np.ndarray, cancel: CancelToken = None) -> list[Face]:
        """All faces in ``image`` (H×W×3 uint8/uint16/float, or grey), largest first.
        ``cancel`` is checked between levels, every few tiles and between faces (raises
        Cancelled): a 12 MP frame takes a good part of a second."""
        if not self._quiet_native:
            return self._detect(image, cancel)
        with quiet_native_stderr():
            faces = self._detect(image, cancel)
        self._quiet_native = not faces
        return faces

    def _detect(self, image: np.ndarray, cancel: CancelToken) -> list[Face]:
        rgb = to_uint8_rgb(image)
        h, w = rgb.shape[:2]
        if h < 8 or w < 8:
            return []
        jobs, small = self._tile_jobs(rgb, self.effective_min_face(w, h), cancel)
        # the whole frame (both models) is looked at while the helper thread starts on the tiles
        found, whole = self._share(
            len(jobs),
            lambda i, g: self._run(g[0], *jobs[i]),
            cancel,
            min_parallel=_MIN_PARALLEL_TILES,
            alongside=lambda: self._detect_full_frame(rgb, small),
        )
        merged = [r for r in _nms([r for rs in found for r in rs] + whole) if r.score >= self.min_score]
        # each detection confirmed (face mesh, second look) on a close crop, ~10 ms a face
        confirmed, _ = self._share(
            len(merged),
            lambda i, g: self._confirm(rgb, merged[i], g),
            cancel,
            min_parallel=_MIN_PARALLEL_FACES,
            check_every=1,
            mesh=True,
        )
        faces = [f for f in confirmed if f is not None]
        faces.sort(key=lambda f: f.width, reverse=True)
        return faces

    def effective_min_face(self, width: int, height: int) -> int:
        """The smallest face width (px) searched for in a ``width``×``height`` photo."""
        if self.min_face is not None:
            return max(8, int(self.min_face))
        return max(24, int(round(max(width, height) / 64)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for g in (self._full, self._short, self._short_helper, self._mesh, self._mesh_helper):
            if g is not None:
                g.close()
        self._full = self._short = self._short_helper = self._mesh = self._mesh_helper = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- detection ----------------------------------------------------------------------------

    def _run(self, graph, tile: np.ndarray, to_image: np.ndarray, inner: tuple | None) -> list[_Raw]:
        """Run one detector on a square ``tile``; ``to_image`` (2×3) maps tile px → image px.
        ``inner`` = (left, top, right, bottom) booleans: which tile edges are inside the photo
        (detections touching those are cut faces and are dropped)."""
        result = graph.process(tile)
        out = []
        side = tile.shape[0]
        for det in result.detections or ():
            rb = det.location_data.relative_bounding_box
            x0, y0 = rb.xmin * side, rb.ymin * side
            x1, y1 = x0 + rb.width * side, y0 + rb.height * side
            if inner is not None:
                margin = 0.02 * side
                if (inner[0] and x0 < margin) or (inner[1] and y0 < margin) or (
                    inner[2] and x1 > side - margin) or (inner[3] and y1 > side - margin):
                    continue
            kps = det.location_data.relative_keypoints
            pts = np.array([(kps[i].x * side, kps[i].y * side) for i in range(4)], dtype=np.float64)
            box_img = cv2.transform(np.array([[[x0, y0], [x1, y1]]], dtype=np.float64), to_image)[0]
            pts_img = cv2.transform(pts[None], to_image)[0]
            out.append(
                _Raw(
                    box=np.array([*box_img[0], *box_img[1]]),
                    score=float(det.score[0]),
                    points=pts_img,
                    px_per_face=float(x1 - x0),
                )
            )
        return out

    def _detect_full_frame(self, rgb: np.ndarray, small: np.ndarray | None = None) -> list[_Raw]:
        """Both models on the whole frame, letterboxed (padded to a square, area-downscaled) by us
        rather than by MediaPipe, whose plain bilinear resize aliases on a large photo. ``small``:
        a downscaled copy of ``rgb`` (a pyramid level) to resize from, far cheaper than the photo."""
        h, w = rgb.shape[:2]
        side = max(h, w)
        src = small if small is not None and max(small.shape[:2]) >= _FULL_INPUT else rgb
        raws = []
        for graph, size in ((self._short, _SHORT_INPUT), (self._full, _FULL_INPUT)):
            scale = size / side
            tile = np.zeros((size, size, 3), np.uint8)
            rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
            tile[:rh, :rw] = _resize(src, rw, rh)
            to_image = np.array([[w / rw, 0, 0], [0, h / rh, 0]], dtype=np.float64)
            raws += self._run(graph, tile, to_image, None)
        return raws

    def _tile_jobs(
        self, rgb: np.ndarray, min_face: int, cancel: CancelToken = None
    ) -> tuple[list, np.ndarray | None]:
        """The tiles for the short-range model, one octave per level: at a level of tile side T
        (image px) the tile is downscaled to the model's 128² input, where the smallest face
        searched for (T / _TILE_PER_FACE) is ~18 px, the size the model still finds reliably.
        Returns the (tile, tile px → image px, inner edges) jobs for ``_share`` and the
        coarsest level made that is still at least the full-range model's input (192 px) on its
        long side, for the full-frame pass (a 12 MP photo: 16 ms less than resizing the photo)."""
        h, w = rgb.shape[:2]
        jobs = []  # (tile, tile px → image px, inner edges), finest level first
        tile_side = _TILE_PER_FACE * min_face  # in image pixels
        size = _SHORT_INPUT
        level = small = None
        while tile_side < max(h, w):
            check_cancel(cancel)
            scale = size / tile_side  # level pixels per image pixel
            lw, lh = max(1, round(w * scale)), max(1, round(h * scale))
            if level is None:
                level = _resize(rgb, lw, lh)
            else:
                # a pyramid: each level halves the previous one (far cheaper than from the photo)
                level = cv2.resize(level, (lw, lh), interpolation=cv2.INTER_AREA)
            if max(lw, lh) >= _FULL_INPUT:
                small = level
            sx, sy = w / lw, h / lh  # level px → image px
            texture = _local_contrast(level)
            flat = _flat_threshold(texture)
            for ty in _tile_starts(lh, size):
                for tx in _tile_starts(lw, size):
                    if texture[ty : ty + size, tx : tx + size].max() < flat:
                        continue  # blank sky, wall or mount: nothing there can be a face
                    tile = np.zeros((size, size, 3), np.uint8)
                    part = level[ty : ty + size, tx : tx + size]
                    tile[: part.shape[0], : part.shape[1]] = part
                    to_image = np.array([[sx, 0, tx * sx], [0, sy, ty * sy]], dtype=np.float64)
                    inner = (tx > 0, ty > 0, tx + size < lw, ty + size < lh)
                    jobs.append((tile, to_image, inner))
            tile_side *= 2
        return jobs, small

    def _share(self, n: int, work, cancel: CancelToken, min_parallel: int, check_every: int = 8,
               alongside=None, mesh: bool = False) -> tuple[list, list]:
        """``work(i, graphs)`` for i in 0..n-1, and ``alongside()`` (more detections, run on the
        calling thread); returns the results in order of i, and alongside's (or []).
        ``graphs`` = (short-range, mesh) graphs of the thread that runs the item. With
        ``threads`` = 2 and at least ``min_parallel`` items a helper thread with its own graphs
        (MediaPipe graphs are not thread-safe) takes items from the same queue, starting at once
        while this thread runs ``alongside``: ``process`` releases the GIL while the graph's own
        threads run the model, so the two overlap. ``cancel`` is only called from the calling
        thread, every ``check_every`` items it takes."""
        results: list = [None] * n
        extra: list = []
        mine = (self._short, self._mesh)
        if self.threads < 2 or n < min_parallel:
            for i in range(n):
                if i % check_every == 0:
                    check_cancel(cancel)
                results[i] = work(i, mine)
            if alongside is not None:
                extra = alongside()
            return results, extra
        helper_graphs = self._helper_graphs(mesh)
        queue = iter(range(n))  # both threads take the next item from here
        lock = threading.Lock()
        stop = threading.Event()

        def take() -> int | None:
            with lock:
                return next(queue, None)

        def helper() -> None:
            while not stop.is_set() and (i := take()) is not None:
                results[i] = work(i, helper_graphs)

        future = self._pool.submit(helper)
        try:
            if alongside is not None:
                extra = alongside()
            taken = 0
            while (i := take()) is not None:
                if taken % check_every == 0:
                    check_cancel(cancel)
                taken += 1
                results[i] = work(i, mine)
        except BaseException:  # Cancelled, or an error: the helper stops after its current item
            stop.set()
            raise
        finally:
            future.result()
        return results, extra

    def _helper_graphs(self, mesh: bool) -> tuple:
        """The helper thread's (short-range, mesh) graphs and the thread (made once)."""
        import mediapipe as mp

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
        with quiet_native_stderr():
            if self._short_helper is None:
                self._short_helper = mp.solutions.face_detection.FaceDetection(
                    min_detection_confidence=min(0.3, self.min_score), model_selection=0
                )
                _start(self._short_helper)
            if mesh and self._mesh is not None and self._mesh_helper is None:
                self._mesh_helper = mp.solutions.face_mesh.FaceMesh(**_MESH_OPTIONS)
                _start(self._mesh_helper)
        return self._short_helper, self._mesh_helper

    def _confirm(self, rgb: np.ndarray, r: _Raw, graphs: tuple) -> Face | None:
        """The Face for detection ``r``, or None where it is not confirmed. ``graphs`` = the
        (short-range, mesh) graphs of the thread this runs on."""
        short, mesh = graphs
        doubtful = r.score < _SURE_SCORE
        meshed = r.box[2] - r.box[0] >= self.mesh_min_face and mesh is not None
        face = self._refine(rgb, r, mesh) if meshed else None
        if face is None and (doubtful or meshed):
            # to be kept, a detection must be confirmed by the mesh (which runs its own
            # detector on a close crop) or, where there is no mesh result, by a second look;
            # a doubtful one that the mesh rejected is dropped outright (on leaves and
            # hats the second look is fooled as easily as the tiles were)
            if doubtful and meshed:
                return None
            r = self._second_look(rgb, r, short)
            if r is None:
                return None
        if face is None:
            face = Face(
                box=tuple(float(v) for v in r.box),
                score=float(r.score),
                landmarks=five_from_four(r.points),
                source="detector",
            )
        return face

    def _second_look(self, rgb: np.ndarray, raw: _Raw, short) -> _Raw | None:
        """Look again at a doubtful detection with the face at half the model's input (where the
        short-range model is at its best); keep it only if a face is found at the same place.
        This removes the leaves, hats and hands that tiles of a busy photo score at 0.5–0.7."""
        x0, y0, x1, y1 = raw.box
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        half = 1.0 * max(x1 - x0, y1 - y0)
        size = _SHORT_INPUT
        scale = size / (2 * half)
        m = np.array([[scale, 0, -(cx - half) * scale], [0, scale, -(cy - half) * scale]], dtype=np.float64)
        crop = align.warp_affine(rgb, m, (size, size), border=cv2.BORDER_CONSTANT)
        found = self._run(short, np.ascontiguousarray(crop), align.invert(m), None)
        best = None
        for f in found:
            if f.score < 0.5 or _iou(f.box, raw.box) < 0.4 or _pose_angle(f.points, raw.points) > 45:
                continue  # not the same face seen the same way up (texture fools each look anew)
            if best is None or f.score > best.score:
                best = f
        if best is None:
            return None
        # the closer view's keypoints and box are the better ones
        return _Raw(box=best.box, score=max(raw.score, best.score), points=best.points, px_per_face=best.px_per_face)

    # -- landmarks ----------------------------------------------------------------------------

    def _refine(self, rgb: np.ndarray, raw: _Raw, mesh) -> Face | None:
        """Face mesh on a square crop around the face; None when the mesh does not agree with the
        detector (e.g. it locked onto a neighbour in a crowd) or finds nothing."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = raw.box
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        half = 0.9 * max(x1 - x0, y1 - y0)  # the face ≈ 55 % of the crop: mesh's own detector likes that
        size = 256
        # crop → image: similarity (square crop, possibly past the photo's edge: border replicated)
        scale = size / (2 * half)
        m = np.array([[scale, 0, -(cx - half) * scale], [0, scale, -(cy - half) * scale]], dtype=np.float64)
        crop = align.warp_affine(rgb, m, (size, size), border=cv2.BORDER_REPLICATE)
        result = mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        inv = align.invert(m)
        iod = float(np.linalg.norm(raw.points[1] - raw.points[0])) or 1.0
        best, best_err = None, math.inf
        for lms in result.multi_face_landmarks:
            lm = lms.landmark

            def pt(i: int) -> tuple[float, float]:
                return lm[i].x * size, lm[i].y * size

            eye_l = np.mean([pt(i) for i in _MESH_EYE_IMAGE_LEFT], axis=0)
            eye_r = np.mean([pt(i) for i in _MESH_EYE_IMAGE_RIGHT], axis=0)
            pts = np.array([eye_l, eye_r, pt(_MESH_NOSE_TIP), pt(_MESH_MOUTH_LEFT), pt(_MESH_MOUTH_RIGHT)])
            pts = cv2.transform(pts[None], inv)[0]
            mouth_c = 0.5 * (pts[3] + pts[4])
            four = np.vstack([pts[:3], mouth_c])
            err = float(np.max(np.linalg.norm(four - raw.points, axis=1))) / iod
            if err < best_err:
                best, best_err = pts, err
        # the detector's keypoints are coarse but never on another face: allow ~0.35 eye distance
        if best is None or best_err > 0.35:
            return None
        return Face(box=tuple(float(v) for v in raw.box), score=raw.score, landmarks=best, source="mesh")


def _start(graph) -> None:
    """Run a new MediaPipe graph once on a blank frame: its calculators open (and TensorFlow Lite
    prints its start-up lines) now, under quiet_native_stderr, rather than in the first detect."""
    if graph is not None:
        graph.process(np.zeros((64, 64, 3), np.uint8))


def five_from_four(points: np.ndarray) -> np.ndarray:
    """Five landmarks from the detector's four (eyes, nose tip, mouth centre). The mouth corners
    are the template's, mapped back through the four-point alignment and shifted so that their
    midpoint is exactly the detected mouth centre: the four measured points survive unchanged
    (``Face.alignment_points`` recovers them) and the five align almost exactly as the four do."""
    pts = np.asarray(points, dtype=np.float64).reshape(4, 2)
    inv = align.invert(align.estimate_similarity(pts, align.template(align.CROP_SIZE, points=4)))
    corners = cv2.transform(align.TEMPLATE_256[3:5][None], inv)[0]
    corners += pts[3] - corners.mean(0)
    return np.vstack([pts[:3], corners])


def _pose_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees between the 'up' directions (mouth → between the eyes) of two keypoint sets."""
    ua = 0.5 * (a[0] + a[1]) - a[3]
    ub = 0.5 * (b[0] + b[1]) - b[3]
    cos = float(ua @ ub) / (float(np.linalg.norm(ua) * np.linalg.norm(ub)) + 1e-9)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaging downscale (cubic upscale). A reduction by 2× or more first halves the image
    in exact 2× steps, which OpenCV does ~7× faster per source pixel than an arbitrary area
    factor (12 MP → 1180×885: 6 ms for the halving + 17 ms for the rest, against 42 ms in one
    go); the last bit of a pixel row lost to an odd size is immaterial for detection."""
    if width >= image.shape[1] and height >= image.shape[0]:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        h2, w2 = image.shape[0] // 2, image.shape[1] // 2
        image = cv2.resize(image[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _local_contrast(level: np.ndarray) -> np.ndarray:
    """The grey-level standard deviation in the 8×8 window around each pixel of ``level``. A face
    the model can find (≥ 18 px at the level's scale) has eyes, brows and mouth against skin: on
    the 40 old photos every tile that gave a detection had a window of std ≥ 14, while blank sky
    under JPEG noise stays below 3."""
    g = cv2.cvtColor(level, cv2.COLOR_RGB2GRAY)
    mean = cv2.boxFilter(g, cv2.CV_32F, (8, 8))
    mean_sq = cv2.sqrBoxFilter(g, cv2.CV_32F, (8, 8))  # squares summed by OpenCV: 40 % faster
    return cv2.sqrt(cv2.max(mean_sq - mean * mean, 0.0))


def _flat_threshold(texture: np.ndarray) -> float:
    """Tiles whose most contrasted 8×8 window is below this are skipped: _FLAT_STD grey levels,
    lowered on a faded photo (whose faces are faint too) to _FLAT_REL of its strong contrasts
    (the 99th percentile of the windows that are not perfectly flat, so that a mostly blank
    frame does not drag it to 0)."""
    sample = texture[::4, ::4]
    sample = sample[sample > 0.5]
    if sample.size == 0:
        return _FLAT_STD  # a perfectly flat frame
    return min(_FLAT_STD, _FLAT_REL * float(np.percentile(sample, 99)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``length`` with at least _OVERLAP overlap."""
    if length <= tile:
        return [0]
    stride = tile * (1 - _OVERLAP)
    n = int(math.ceil((length - tile) / stride)) + 1
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def _nms(raws: list[_Raw], iou_threshold: float = 0.3, contain_threshold: float = 0.6) -> list[_Raw]:
    """Merge duplicates from overlapping tiles and levels: a detection that overlaps a better
    one (IoU above ``iou_threshold``, or mostly inside it) is dropped. "Better" = higher score,
    near-ties broken by the view in which the face had more pixels (sharper keypoints)."""
    order = sorted(raws, key=lambda r: (round(r.score, 1), r.px_per_face), reverse=True)
    kept: list[_Raw] = []
    for r in order:
        a = r.box
        area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
        dup = False
        for k in kept:
            b = k.box
            iw = min(a[2], b[2]) - max(a[0], b[0])
            ih = min(a[3], b[3]) - max(a[1], b[1])
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            area_b = (b[2] - b[0]) * (b[3] - b[1])
            # a box mostly inside a similar-sized one is the same face seen cut or shifted; a
            # small box inside a much bigger (false) one is not suppressed by it
            similar = min(area_a, area_b) > 0.25 * max(area_a, area_b)
            if inter / (area_a + area_b - inter) > iou_threshold or (
                similar and inter / min(area_a, area_b) > contain_threshold
            ):
                dup = True
                break
        if not dup:
            kept.append(r)
    return kept
