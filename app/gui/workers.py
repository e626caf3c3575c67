"""Work off the GUI thread.

``EngineWorker`` is one long-lived QThread that owns the face detector (MediaPipe is not
thread-safe: one detector per thread, created and closed on this one), the restorer and the
per-cycle cache of the open photo. The GUI submits jobs; a new job cancels the one in flight and
replaces any that were waiting, so the GUI thread never waits on inference and a slider dragged
across five values runs only the last one. Results come back as queued signals carrying the
document number, so a late result for a photo that was since closed is simply dropped.

``Task`` runs one short function in a QThreadPool (saving, the NPU simulation, timing a model).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThread, Signal

from app.core.align import is_print_tone, keep_print_tone
from app.core.errors import Cancelled, CfrError
from app.core.restorer import to_float01
from app.gui.imaging import array_to_qimage

log = logging.getLogger("cfr.gui.workers")

DEFAULT_AUTO_THRESHOLD = 0.004
DEFAULT_MAX_AUTO_CYCLES = 6


def describe_error(exc: BaseException) -> str:
    """The text shown to the user: engine errors already name the file and the problem."""
    if isinstance(exc, CfrError):
        return str(exc)
    return f"Unexpected error: {type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------- jobs
@dataclass
class OpenJob:
    doc: int
    path: Path | None = None
    photo: Any = None  # an app.core.io.Photo made from the clipboard
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class RenderJob:
    """Make sure the cycles exist for every included face, then composite.

    ``show_cycle`` (1…) composites that cycle instead of k for every face (the preview strip's
    thumbnails); ``current`` is the face whose cycles are computed first (the strip shows it)."""

    doc: int
    k: int | str
    included: list[int]
    blend: float
    current: int = 0
    show_cycle: int | None = None
    upscale: int | None = None  # 2 or 4: the photo is enlarged, faces are restored at that scale
    upscale_model: str = "sesr"  # the network that enlarges: "sesr" (fast) or "falsr" (×2, better)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class ModelJob:
    path: Path | None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _View:
    """The photo at one scale (1 = as loaded; 2, 4 = upscaled): its pixels, face crops and the
    cycles computed for them."""

    rgb: np.ndarray
    crops: list
    cycles: dict[int, list[np.ndarray]] = field(default_factory=dict)
    converged: dict[int, bool] = field(default_factory=dict)
    family: str | None = None  # the upscaling network ("sesr", "falsr"); None at scale 1


@dataclass
class _State:
    """The open photo as the worker sees it (touched only on the worker thread)."""

    doc: int = -1
    photo: Any = None
    faces: list = field(default_factory=list)
    views: dict[int, _View] = field(default_factory=dict)

    @property
    def crops(self) -> list:
        return self.views[1].crops if 1 in self.views else []


class EngineWorker(QThread):
    photoReady = Signal(int, object, object, object, object)  # doc, Photo, [Face], [Crop], QImage
    modelReady = Signal(object)  # dict: path, name, precision, metadata
    modelFailed = Signal(str)
    # doc, face index, cycle number (1…), float32 crop, mean |Δ| vs previous, seconds for the
    # cycle, scale of the photo the face was cut from (1, or the upscale factor)
    cycleReady = Signal(int, int, int, object, float, float, int)
    # doc, composite rgb, info: {'cycles': {face: n}, 'k': …, 'show_cycle': …, 'qimage': QImage}
    resultReady = Signal(int, object, object)
    failed = Signal(int, str)
    busyChanged = Signal(bool, str)

    def __init__(self, model_path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("engineWorker")
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._current: Any = None
        self._pending: list = []
        self._stopping = threading.Event()
        self._state = _State()
        self._detector = None
        self._restorer = None
        self._pipeline = None
        self.auto_threshold = DEFAULT_AUTO_THRESHOLD
        self.max_auto_cycles = DEFAULT_MAX_AUTO_CYCLES
        self._model_path = model_path
        self.submit(ModelJob(model_path))

    # ---------------------------------------------------------------------- GUI-thread side
    def submit(self, job) -> None:
        """Queue ``job``; cancel what it supersedes (in flight or waiting)."""
        with self._lock:
            supersedes = self._supersedes(job)
            if self._current is not None and supersedes(self._current):
                self._current.cancel.set()
            kept = []
            for old in self._pending:
                if supersedes(old):
                    old.cancel.set()
                else:
                    kept.append(old)
            self._pending = kept + [job]
        self._queue.put(True)

    @staticmethod
    def _supersedes(job) -> Callable[[Any], bool]:
        if isinstance(job, OpenJob):
            return lambda old: isinstance(old, (OpenJob, RenderJob))
        if isinstance(job, RenderJob):
            return lambda old: isinstance(old, RenderJob)
        if isinstance(job, ModelJob):
            return lambda old: isinstance(old, (ModelJob, RenderJob))
        return lambda old: False

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and end the thread; returns True once it has ended."""
        self._stopping.set()
        with self._lock:
            if self._current is not None:
                self._current.cancel.set()
            for old in self._pending:
                old.cancel.set()
            self._pending = []
        self._queue.put(None)
        if self.isRunning():
            return self.wait(timeout_ms)
        return True

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._current is None and not self._pending

    # ------------------------------------------------------------------- worker-thread side
    def run(self) -> None:  # noqa: D401 - QThread entry point
        try:
            self._warm_up()
            while not self._stopping.is_set():
                token = self._queue.get()
                if token is None or self._stopping.is_set():
                    break
                with self._lock:
                    if not self._pending:
                        continue
                    job = self._pending.pop(0)
                    self._current = job
                try:
                    if not job.cancel.is_set():
                        self._run_job(job)
                except Cancelled:
                    log.debug("job cancelled: %s", type(job).__name__)
                except Exception as exc:  # reported, never raised into Qt
                    log.error("%s failed: %s", type(job).__name__, describe_error(exc))
                    if not isinstance(exc, CfrError):
                        log.debug("%s", traceback.format_exc())
                    doc = getattr(job, "doc", -1)
                    if isinstance(job, ModelJob):
                        self.modelFailed.emit(describe_error(exc))
                    else:
                        self.failed.emit(doc, describe_error(exc))
                finally:
                    with self._lock:
                        self._current = None
                        idle = not self._pending
                    if idle:
                        self.busyChanged.emit(False, "")
        finally:
            if self._detector is not None:
                try:
                    self._detector.close()
                except Exception:  # closing must not fail the shutdown
                    pass
                self._detector = None
            self._restorer = None
            self._pipeline = None

    def _warm_up(self) -> None:
        """Make the detector now, while the user looks at the empty window: MediaPipe builds its
        graphs holding the GIL (measured: a ~0.2 s stall of the GUI thread when it happened on
        the first photo opened)."""
        try:
            self._get_pipeline()
        except Exception as exc:  # reported when a photo is opened
            log.warning("face detector not ready: %s", describe_error(exc))

    def _run_job(self, job) -> None:
        if isinstance(job, ModelJob):
            self._load_model(job)
        elif isinstance(job, OpenJob):
            self._open(job)
        elif isinstance(job, RenderJob):
            self._render(job)

    def _get_pipeline(self):
        from app.core.pipeline import Pipeline

        if self._detector is None:
            from app.core.faces import FaceDetector

            self._detector = FaceDetector()
        if self._pipeline is None:
            self._pipeline = Pipeline(restorer=self._restorer, detector=self._detector)
        return self._pipeline

    def _load_model(self, job: ModelJob) -> None:
        self.busyChanged.emit(True, "Loading the model…")
        from app.core import restorer as restorer_mod

        self._restorer = None
        self._pipeline = None
        path = job.path or restorer_mod.default_model_path("int8")
        self._restorer = restorer_mod.Restorer(path)
        self.auto_threshold = float(getattr(restorer_mod, "AUTO_THRESHOLD", DEFAULT_AUTO_THRESHOLD))
        self.max_auto_cycles = int(getattr(restorer_mod, "MAX_AUTO_CYCLES", DEFAULT_MAX_AUTO_CYCLES))
        # cycles of the old model are not cycles of the new one
        for view in self._state.views.values():
            view.cycles.clear()
            view.converged.clear()
        self.modelReady.emit(
            {
                "path": Path(path),
                "name": getattr(self._restorer, "name", Path(path).stem),
                "precision": getattr(self._restorer, "precision", "?"),
                "metadata": dict(getattr(self._restorer, "metadata", {}) or {}),
            }
        )

    def _open(self, job: OpenJob) -> None:
        from app.core.io import load_image

        name = job.path.name if job.path is not None else "the pasted image"
        self.busyChanged.emit(True, f"Opening {name}…")
        t0 = time.perf_counter()
        photo = job.photo if job.photo is not None else load_image(job.path)
        t_load = time.perf_counter() - t0
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        self.busyChanged.emit(True, f"Finding faces in {name}…")
        pipeline = self._get_pipeline()
        t0 = time.perf_counter()
        faces = pipeline.detect(photo)
        t_detect = time.perf_counter() - t0
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        crops = pipeline.align(photo, faces) if faces else []
        self._state = _State(doc=job.doc, photo=photo, faces=list(faces), views={1: _View(photo.rgb, list(crops))})
        log.info("%s: %d face(s) found (load %.0f ms, detect %.0f ms)", name, len(faces), t_load * 1e3, t_detect * 1e3)
        # the screen copy is made here: for a 50 MP photo it takes a noticeable time
        self.photoReady.emit(job.doc, photo, list(faces), list(crops), array_to_qimage(photo.rgb))

    def _view(self, scale: int, cancel: threading.Event, family: str = "sesr") -> _View:
        """The photo at ``scale``: upscaled by the ``family`` network the first time it is asked
        for (again when the network changes), its faces scaled and cut again from the larger
        photo (as Pipeline.run does)."""
        st = self._state
        view = st.views.get(scale)
        if view is not None and (scale == 1 or view.family == family):
            return view
        pipeline = self._get_pipeline()
        name = "FALSR-C" if family == "falsr" else "SESR"
        self.busyChanged.emit(True, f"Upscaling the photo ×{scale} ({name})…")
        from app.core.upscaler import default_upscaler_path

        up = pipeline._upscaler(scale, default_upscaler_path(scale, family=family))
        rgb = up.upscale(st.photo.rgb, cancel=cancel)
        faces = [f.scaled(scale) for f in st.faces]
        view = _View(rgb, pipeline.align(rgb, faces) if faces else [], family=family)
        st.views[scale] = view
        log.info("upscaled ×%d with %s: %d×%d", scale, getattr(up, "name", "SESR"), rgb.shape[1], rgb.shape[0])
        return view

    def _cycles_for(self, view: _View, scale: int, idx: int, k: int | str, cancel: threading.Event) -> list[np.ndarray]:
        """The cycles of face ``idx`` up to k, computing only the missing ones."""
        st = self._state
        cache = view.cycles.setdefault(idx, [])
        if self._restorer is None:
            raise CfrError("No restoration model is loaded (see the message at the top of the window).")
        auto = k == "auto"
        target = self.max_auto_cycles if auto else int(k)
        if (auto and view.converged.get(idx)) or len(cache) >= target:
            return cache
        crop = view.crops[idx].image
        original = to_float01(crop)
        # the strip shows each cycle as it will be pasted back, and its change as seen there: on a
        # B&W or toned print the model's colours are not used, so showing them (or counting them as
        # change) would misrepresent the result. Auto-stop uses the raw cycles.
        print_tone = is_print_tone(original)

        def as_shown(cycle: np.ndarray) -> np.ndarray:
            return keep_print_tone(cycle, original) if print_tone else cycle

        previous = cache[-1] if cache else original
        previous_shown = as_shown(previous) if cache else original
        while len(cache) < target:
            if cancel.is_set():
                raise Cancelled("cancelled")
            start = cache[-1] if cache else crop
            n_more = 1 if auto else target - len(cache)
            t0 = time.perf_counter()
            for out in self._restorer.restore(start, n_more, cancel=cancel):
                seconds = time.perf_counter() - t0
                out = np.asarray(out, dtype=np.float32)
                delta = float(np.mean(np.abs(out - previous)))
                cache.append(out)
                shown = as_shown(out)
                shown_delta = float(np.mean(np.abs(shown - previous_shown)))
                self.cycleReady.emit(st.doc, idx, len(cache), shown, shown_delta, seconds, scale)
                previous, previous_shown = out, shown
                t0 = time.perf_counter()
                if auto and delta < self.auto_threshold:
                    view.converged[idx] = True
                    return cache
                if cancel.is_set():
                    raise Cancelled("cancelled")
        return cache

    def _render(self, job: RenderJob) -> None:
        st = self._state
        if job.doc != st.doc or st.photo is None:
            return
        scale = int(job.upscale or 1)
        view = self._view(scale, job.cancel, job.upscale_model)
        included = [i for i in job.included if 0 <= i < len(st.crops)]
        order = list(included)
        if 0 <= job.current < len(st.crops):
            # the face shown in the preview strip first, and even when it is not pasted back
            if job.current in order:
                order.remove(job.current)
            order.insert(0, job.current)
        used: dict[int, int] = {}
        restored_by_face: dict[int, np.ndarray] = {}
        for n, idx in enumerate(order):
            self.busyChanged.emit(True, f"Restoring face {idx + 1} ({n + 1} of {len(order)}), k = {job.k}…")
            cycles = self._cycles_for(view, scale, idx, job.k, job.cancel)
            if job.k == "auto":
                n_use = len(cycles)
                if not view.converged.get(idx):
                    n_use = min(len(cycles), self.max_auto_cycles)
            else:
                n_use = int(job.k)
            if job.show_cycle is not None:
                n_use = min(job.show_cycle, len(cycles))
            if idx not in included:
                continue
            used[idx] = n_use
            restored_by_face[idx] = cycles[n_use - 1]
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        chosen = sorted(restored_by_face)
        if chosen and job.blend > 0:
            self.busyChanged.emit(True, "Pasting the faces back…")
            pipeline = self._get_pipeline()
            rgb = pipeline.composite(
                view.rgb, [view.crops[i] for i in chosen], [restored_by_face[i] for i in chosen], job.blend
            )
        else:
            rgb = view.rgb.copy()
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        info = {"cycles": used, "k": job.k, "show_cycle": job.show_cycle, "blend": job.blend,
                "upscale": scale, "upscale_model": view.family, "qimage": array_to_qimage(rgb)}
        self.resultReady.emit(job.doc, rgb, info)


# ------------------------------------------------------------------------- one-off tasks
class TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(str)


class Task(QRunnable):
    """Run ``fn(*args)`` in a thread pool; ``signals.done(result)`` or ``signals.failed(text)``."""

    def __init__(self, fn: Callable, *args, **kwargs) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python keeps the reference (see MainWindow._tasks)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = TaskSignals()

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:
            log.error("%s", describe_error(exc))
            if not isinstance(exc, CfrError):
                log.debug("%s", traceback.format_exc())
            self.signals.failed.emit(describe_error(exc))
        else:
            self.signals.done.emit(result)
