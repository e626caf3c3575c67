"""A folder of photos → an output folder with the same structure, restored.

Resumable: an output that exists is skipped (so a re-run after a crash or a cancel carries on),
and every output is written atomically, so nothing half-written is ever mistaken for done.
A file that fails is recorded and the batch goes on. A manifest of every file (status, faces, k,
timings, error) is written atomically after each file (JSON) and as CSV at the end.

Workers: ``workers=1`` runs in the calling thread. More workers run as threads (default: one ONNX
session shared, since ONNX Runtime sessions may be run from several threads, and one FaceDetector
per thread, since MediaPipe graphs may not) or as processes (each its own pipeline).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Union

from app.core.errors import CancelToken, Cancelled, CfrError, ProgressFn, cancelled
from app.core.io import SUPPORTED_SUFFIXES, is_supported_image, write_atomic

MANIFEST_JSON = "cfr-manifest.json"
MANIFEST_CSV = "cfr-manifest.csv"
EXISTING_POLICIES = ("skip", "overwrite", "rename")
OUTPUT_FORMATS = ("same", "jpg", "png", "tif", "webp")
STATUSES = ("done", "skipped", "failed", "cancelled")


@dataclass
class BatchOptions:
    restore: object = None  # app.core.pipeline.RestoreOptions; None = its defaults
    recursive: bool = False
    workers: int = 1
    parallel: str = "thread"  # 'thread' | 'process' (only with workers > 1)
    output_format: str = "same"  # 'same' as the input, or one of OUTPUT_FORMATS
    existing: str = "skip"  # what to do where the output exists: skip | overwrite | rename
    model_path: Optional[Path] = None  # None: the default INT8 CFRNet
    quality: Optional[int] = None  # JPEG/WebP quality of the outputs; None = RestoreOptions.quality
    threads: int = 0  # ONNX Runtime threads per session; 0 = share the cores among the workers


@dataclass
class FileRecord:
    input: str  # relative to the input folder, '/'-separated
    output: str  # relative to the output folder ('' where nothing was written)
    status: str  # done | skipped | failed | cancelled
    faces: int = 0  # faces found
    restored: int = 0  # faces restored (selected)
    k: str = ""  # the k asked for (a number or 'auto')
    cycles: list[int] = field(default_factory=list)  # cycles actually run, per restored face
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    seconds: float = 0.0  # wall time for this file
    error: str = ""  # why it failed or was skipped
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    input_dir: Path
    output_dir: Path
    records: list[FileRecord]
    seconds: float
    manifest_json: Optional[Path]
    manifest_csv: Optional[Path]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def all_failed(self) -> bool:
        """The batch as a whole failed: every photo failed (one done now or in an earlier run,
        i.e. skipped, means it did not)."""
        tried = [r for r in self.records if r.status in ("done", "skipped", "failed")]
        return bool(tried) and all(r.status == "failed" for r in tried)

    @property
    def was_cancelled(self) -> bool:
        return self.count("cancelled") > 0

    def summary(self) -> str:
        parts = [f"{self.count('done')} restored"]
        for status in ("skipped", "failed", "cancelled"):
            if self.count(status):
                parts.append(f"{self.count(status)} {status}")
        faces = sum(r.restored for r in self.records if r.status == "done")
        return (
            f"{len(self.records)} photos: " + ", ".join(parts) + f"; {faces} faces restored "
            f"in {self.seconds:.1f} s → {self.output_dir}"
        )


# ------------------------------------------------------------------------------ planning


def find_images(input_dir: Union[str, Path], recursive: bool = False,
                exclude: Optional[Path] = None) -> list[Path]:
    """Image files in a folder (sorted; hidden files and folders, and ``exclude``, left out)."""
    input_dir = Path(input_dir)
    exclude_r = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for root, dirs, files in os.walk(input_dir):
        root_p = Path(root)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and (exclude_r is None or (root_p / d).resolve() != exclude_r)
        )
        found.extend(root_p / f for f in sorted(files) if is_supported_image(f))
        if not recursive:
            break
    return found


def _output_suffix(src: Path, output_format: str) -> str:
    if output_format == "same":
        return src.suffix
    return "." + output_format


def _free_name(path: Path, taken: set[Path]) -> Path:
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        if not candidate.exists() and candidate not in taken:
            return candidate
        n += 1


@dataclass
class _Job:
    index: int
    src: Path
    rel: str
    dst: Path


def _plan(inputs: list[Path], input_dir: Path, output_dir: Path, options: BatchOptions,
          previous: dict[str, dict]) -> tuple[list[_Job], list[FileRecord]]:
    jobs: list[_Job] = []
    skipped: list[FileRecord] = []
    taken: set[Path] = set()  # output names given out
    natural: set[Path] = set()  # output names before any renaming for existing files
    for i, src in enumerate(inputs):
        rel_path = src.relative_to(input_dir)
        rel = rel_path.as_posix()
        dst = (output_dir / rel_path).with_suffix(_output_suffix(src, options.output_format))
        if dst in natural:  # a.png and a.jpg both → a.jpg: keep both, tagged by their own type
            dst = dst.with_name(f"{dst.stem}_{src.suffix.lstrip('.').lower()}{dst.suffix}")
        natural.add(dst)
        prev = previous.get(rel)
        if options.existing == "skip" and dst.exists():
            skipped.append(FileRecord(rel, _rel(dst, output_dir), "skipped", error="output exists"))
            taken.add(dst)
            continue
        if options.existing == "rename":
            # resume: a file the last run finished is not done again under a new name
            if prev and prev.get("status") == "done" and prev.get("output") \
                    and (output_dir / prev["output"]).exists():
                skipped.append(FileRecord(rel, prev["output"], "skipped", error="done in an earlier run"))
                taken.add(output_dir / prev["output"])
                continue
            if dst.exists() or dst in taken:
                dst = _free_name(dst, taken)
        taken.add(dst)
        jobs.append(_Job(i, src, rel, dst))
    return jobs, skipped


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------ one file


def _process(pipeline, job: _Job, restore_options, overwrite: bool, output_dir: Path,
             cancel: CancelToken = None) -> FileRecord:
    from app.core.pipeline import restore_file

    rec = FileRecord(job.rel, "", "failed", k=str(getattr(restore_options, "k", "")))
    t0 = time.perf_counter()
    try:
        if cancelled(cancel):
            raise Cancelled("cancelled")
        result = restore_file(job.src, job.dst, restore_options, pipeline=pipeline,
                              overwrite=overwrite, cancel=cancel)
        rec.status = "done"
        rec.output = _rel(job.dst, output_dir)
        rec.faces = len(result.faces)
        chosen = [f for f in result.faces if f.selected]
        rec.restored = len(chosen)
        rec.cycles = [len(f.cycles) for f in chosen]
        rec.timings = {k: round(float(v), 4) for k, v in result.timings.items()}
        rec.warnings = list(getattr(result.photo.meta, "warnings", []) or [])
        if not result.faces:
            rec.warnings.append("no faces found: the photo was written unchanged")
    except Cancelled:
        rec.status = "cancelled"
    except CfrError as exc:
        rec.error = str(exc)
    except MemoryError:
        rec.error = f"'{job.src}' is too large to restore with the memory available."
    except Exception as exc:  # a bug on one photo must not end the batch: report it and go on
        rec.error = f"'{job.src}': unexpected error: {type(exc).__name__}: {exc}"
    rec.seconds = round(time.perf_counter() - t0, 4)
    return rec


# process workers keep their own pipeline in a module global, built once per process
_WORKER_PIPELINE = None


def _worker_init(model_path: Optional[str], threads: int) -> None:
    global _WORKER_PIPELINE
    _WORKER_PIPELINE = _make_pipeline(_make_restorer(model_path, threads))


def _worker_run(job: _Job, restore_options, overwrite: bool, output_dir: Path) -> FileRecord:
    return _process(_WORKER_PIPELINE, job, restore_options, overwrite, output_dir)


def _make_restorer(model_path, threads: int):
    from app.core.restorer import Restorer

    return Restorer(model_path=Path(model_path) if model_path else None, threads=threads)


def _make_pipeline(restorer):
    from app.core.faces import FaceDetector
    from app.core.pipeline import Pipeline

    return Pipeline(restorer=restorer, detector=FaceDetector())


# ------------------------------------------------------------------------------ the batch


def run_batch(
    input_dir: Union[str, Path],
    output_dir: Union[str, Path],
    options: Optional[BatchOptions] = None,
    progress: Optional[ProgressFn] = None,
    cancel: CancelToken = None,
    restorer=None,
) -> BatchResult:
    """Restore every photo in ``input_dir`` into ``output_dir``. Raises CfrError only for problems
    with the whole batch (folders, model); a bad photo is a 'failed' record and the batch goes on.
    ``restorer``: an already open Restorer to use (thread workers share it); None = open one."""
    from app.core.pipeline import RestoreOptions

    options = options or BatchOptions()
    restore_options = options.restore if options.restore is not None else RestoreOptions()
    if options.quality is not None:
        restore_options = dataclasses.replace(restore_options, quality=int(options.quality))
    _check_options(options)
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise CfrError(f"The input folder '{input_dir}' does not exist or is not a folder.")
    if input_dir.resolve() == output_dir.resolve():
        raise CfrError(
            f"The output folder '{output_dir}' is the input folder; choose another one so the "
            "originals are never overwritten."
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CfrError(f"The output folder '{output_dir}' cannot be created ({exc.strerror or exc}).") from exc
    if not os.access(output_dir, os.W_OK):
        raise CfrError(f"The output folder '{output_dir}' is not writable.")

    t_start = time.perf_counter()
    inputs = find_images(input_dir, options.recursive, exclude=output_dir)
    previous = _read_previous_manifest(output_dir / MANIFEST_JSON)
    jobs, records = _plan(inputs, input_dir, output_dir, options, previous)
    total = len(inputs)
    manifest = _Manifest(output_dir, input_dir, options, restore_options, total)
    for r in records:
        manifest.add(r)
    done_count = len(records)
    if progress:
        progress(done_count, total, f"{len(records)} already done" if records else "starting")

    def finished(rec: FileRecord) -> None:
        nonlocal done_count
        manifest.add(rec)
        manifest.write_json()
        done_count += 1
        if progress:
            what = {"done": f"restored ({rec.restored} faces)", "failed": "FAILED",
                    "cancelled": "cancelled", "skipped": "skipped"}[rec.status]
            progress(done_count, total, f"{rec.input}: {what}")

    overwrite = options.existing == "overwrite"
    if jobs:
        if restorer is None:
            # opened here even for process workers: a missing or corrupt model fails once, clearly
            threads = options.threads or (0 if options.workers <= 1 else
                                          max(1, (os.cpu_count() or 1) // options.workers))
            restorer = _make_restorer(options.model_path, threads)
        if options.workers <= 1:
            pipeline = _make_pipeline(restorer)
            try:
                for job in jobs:
                    if cancelled(cancel):
                        finished(FileRecord(job.rel, "", "cancelled", k=str(restore_options.k)))
                        continue
                    finished(_process(pipeline, job, restore_options, overwrite, output_dir, cancel))
            finally:
                _close(pipeline)
        else:
            _run_parallel(jobs, options, restore_options, restorer, overwrite, output_dir, cancel,
                          finished)
    manifest.write_json(final=True)
    manifest.write_csv()
    return BatchResult(input_dir, output_dir, manifest.ordered(inputs, input_dir),
                       time.perf_counter() - t_start, manifest.json_path, manifest.csv_path)


def _check_options(options: BatchOptions) -> None:
    if options.existing not in EXISTING_POLICIES:
        raise CfrError(f"Unknown policy for existing outputs '{options.existing}'; "
                       f"use one of {', '.join(EXISTING_POLICIES)}.")
    if options.output_format not in OUTPUT_FORMATS:
        raise CfrError(f"Unknown output format '{options.output_format}'; "
                       f"use one of {', '.join(OUTPUT_FORMATS)}.")
    if options.parallel not in ("thread", "process"):
        raise CfrError(f"Unknown kind of workers '{options.parallel}'; use thread or process.")
    if options.workers < 1:
        raise CfrError("The number of workers must be 1 or more.")


def _close(pipeline) -> None:
    detector = getattr(pipeline, "detector", None)
    if detector is not None and hasattr(detector, "close"):
        try:
            detector.close()
        except Exception:
            pass


def _run_parallel(jobs, options, restore_options, restorer, overwrite, output_dir, cancel,
                  finished: Callable[[FileRecord], None]) -> None:
    workers = options.workers
    executor: Executor
    local = threading.local()
    pipelines: list = []
    lock = threading.Lock()

    if options.parallel == "process":
        import multiprocessing

        threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
        # spawn, not fork: forking a process that holds ONNX Runtime / MediaPipe threads can hang
        executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
            initargs=(str(options.model_path) if options.model_path else None, threads))

        def submit(job):
            return executor.submit(_worker_run, job, restore_options, overwrite, output_dir)
    else:
        executor = ThreadPoolExecutor(workers, thread_name_prefix="cfr-batch")

        def thread_task(job):
            pipeline = getattr(local, "pipeline", None)
            if pipeline is None:  # one FaceDetector per thread: MediaPipe is not thread-safe
                pipeline = local.pipeline = _make_pipeline(restorer)
                with lock:
                    pipelines.append(pipeline)
            return _process(pipeline, job, restore_options, overwrite, output_dir, cancel)

        def submit(job):
            return executor.submit(thread_task, job)

    pending: dict = {}
    queue = list(jobs)
    try:
        while queue or pending:
            # submit lazily so that a cancel stops work that has not started
            while queue and len(pending) < 2 * workers and not cancelled(cancel):
                job = queue.pop(0)
                pending[submit(job)] = job
            if not pending:
                break
            done, _ = wait(list(pending), timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:  # a worker process died (out of memory, crash)
                    rec = FileRecord(job.rel, "", "failed", k=str(restore_options.k),
                                     error=f"'{job.src}': the worker stopped: {type(exc).__name__}: {exc}")
                finished(rec)
        for job in queue:  # cancelled before they started
            finished(FileRecord(job.rel, "", "cancelled", k=str(restore_options.k)))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        for p in pipelines:
            _close(p)


# ------------------------------------------------------------------------------ manifest


def _read_previous_manifest(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {r["input"]: r for r in data.get("files", []) if "input" in r}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


class _Manifest:
    def __init__(self, output_dir: Path, input_dir: Path, options: BatchOptions, restore_options,
                 total: int):
        self.json_path = output_dir / MANIFEST_JSON
        self.csv_path = output_dir / MANIFEST_CSV
        self.records: dict[str, FileRecord] = {}
        self.header = {
            "tool": "cfr-studio batch",
            "input_dir": str(input_dir),
            "output_dir": str(output_dir),
            "started": _now(),
            "total": total,
            "options": {
                "recursive": options.recursive, "workers": options.workers,
                "parallel": options.parallel, "output_format": options.output_format,
                "existing": options.existing,
                "model": str(options.model_path) if options.model_path else "default",
                "restore": _plain(restore_options),
            },
        }

    def add(self, rec: FileRecord) -> None:
        self.records[rec.input] = rec

    def ordered(self, inputs: list[Path], input_dir: Path) -> list[FileRecord]:
        order = {p.relative_to(input_dir).as_posix(): i for i, p in enumerate(inputs)}
        return sorted(self.records.values(), key=lambda r: order.get(r.input, len(order)))

    def write_json(self, final: bool = False) -> None:
        counts = {s: sum(r.status == s for r in self.records.values()) for s in STATUSES}
        doc = dict(self.header, updated=_now(), finished=final, counts=counts,
                   files=[asdict(r) for r in self.records.values()])
        write_atomic(self.json_path, json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"),
                     overwrite=True)

    def write_csv(self) -> None:
        stages = sorted({k for r in self.records.values() for k in r.timings})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["input", "output", "status", "faces", "restored", "k", "cycles", "seconds"]
                   + [f"{s}_s" for s in stages] + ["error", "warnings"])
        for r in self.records.values():
            w.writerow([r.input, r.output, r.status, r.faces, r.restored, r.k,
                        " ".join(map(str, r.cycles)), f"{r.seconds:.3f}"]
                       + [f"{r.timings[s]:.4f}" if s in r.timings else "" for s in stages]
                       + [r.error, " | ".join(r.warnings)])
        write_atomic(self.csv_path, buf.getvalue().encode("utf-8"), overwrite=True)


def _plain(obj) -> object:
    """A JSON-friendly copy of an options dataclass (paths as text)."""
    try:
        d = asdict(obj)
    except TypeError:
        return str(obj)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = [
    "BatchOptions", "BatchResult", "FileRecord", "find_images", "run_batch", "MANIFEST_JSON",
    "MANIFEST_CSV", "EXISTING_POLICIES", "OUTPUT_FORMATS", "SUPPORTED_SUFFIXES",
]
