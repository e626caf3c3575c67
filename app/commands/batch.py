"""`cfr-studio batch INPUT_DIR OUTPUT_DIR [--k N|auto] [--model PATH] [--recursive] [--workers N]`

Restores every photo in a folder into another folder with the same structure. Re-running carries
on where a crash or a Ctrl-C stopped (finished outputs are skipped). A bad photo is reported and
the batch goes on; the exit code is non-zero only if every photo that was tried failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from app.commands.restore import add_restore_arguments, error, open_restorer, restore_options
from app.core.errors import CfrError


def add_parser(subparsers) -> argparse.ArgumentParser:
    from app.core.batch import EXISTING_POLICIES, OUTPUT_FORMATS

    p = subparsers.add_parser(
        "batch",
        help="restore every photo in a folder",
        description="Restore every photo (JPEG, PNG, TIFF, WebP, BMP) in INPUT_DIR into "
        "OUTPUT_DIR, keeping the folder structure. Outputs that exist are skipped, so a re-run "
        "resumes; OUTPUT_DIR/cfr-manifest.json and .csv list every file's result. Ctrl-C stops "
        "cleanly after the photos in progress.",
    )
    p.add_argument("input_dir", metavar="INPUT_DIR", type=Path)
    p.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path)
    add_restore_arguments(p)
    p.add_argument("--recursive", "-r", action="store_true", help="include subfolders")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="photos restored at once (default 1)")
    p.add_argument("--parallel", choices=("thread", "process"), default="thread",
                   help="kind of workers when N > 1 (default thread: one model shared)")
    p.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS, default="same",
                   help="output file type (default: same as each input)")
    p.add_argument("--existing", choices=EXISTING_POLICIES, default="skip",
                   help="where an output exists: skip it (resume; default), overwrite it, or "
                   "rename the new one")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


class ProgressBar:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, one line per step
    otherwise (logs, CI)."""

    def __init__(self, stream=None, width: int | None = None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width or shutil.get_terminal_size((100, 20)).columns
        self.t0 = time.perf_counter()
        self.drawn = False
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int, message: str) -> None:
        with self.lock:
            frac = done / total if total else 1.0
            elapsed = time.perf_counter() - self.t0
            eta = ""
            if 0 < done < total and elapsed > 1:
                eta = f" eta {_clock(elapsed / done * (total - done))}"
            head = f"[{'#' * int(frac * 24):<24}] {done}/{total} {frac:4.0%}{eta} "
            if self.tty:
                line = (head + message)[: self.width - 1]
                self.stream.write("\r" + line.ljust(self.width - 1))
                self.drawn = True
            else:
                self.stream.write(f"[{done}/{total}] {message}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def run(args) -> int:
    from app.core.batch import BatchOptions, find_images, run_batch

    if args.workers < 1:
        error("batch", "--workers must be 1 or more")
        return 2
    cancel = threading.Event()
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        cancel.set()
        print("\nstopping after the photos in progress (Ctrl-C again to stop at once)…",
              file=sys.stderr)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    bar = None
    try:
        if not args.input_dir.is_dir():
            raise CfrError(f"The input folder '{args.input_dir}' does not exist or is not a folder.")
        if not find_images(args.input_dir, args.recursive, exclude=args.output_dir):
            hint = "" if args.recursive else " (add --recursive to look in subfolders)"
            raise CfrError(
                f"No photos (JPEG, PNG, TIFF, WebP, BMP) found in '{args.input_dir}'{hint}.")
        # several workers: the shared session gets the cores divided among them
        threads = args.threads or (0 if args.workers == 1 else
                                   max(1, (os.cpu_count() or 1) // args.workers))
        restorer = open_restorer(args.model, threads)  # missing/corrupt model: said once, here
        options = BatchOptions(
            restore=restore_options(args), recursive=args.recursive, workers=args.workers,
            parallel=args.parallel, output_format=args.output_format, existing=args.existing,
            model_path=args.model, threads=args.threads,
        )
        bar = None if args.quiet else ProgressBar()
        result = run_batch(args.input_dir, args.output_dir, options, progress=bar, cancel=cancel,
                           restorer=restorer)
    except KeyboardInterrupt:
        if bar:
            bar.close()
        error("batch", "interrupted. Finished photos are kept; run the same command again to "
              "resume.")
        return 130
    except CfrError as exc:
        if bar:
            bar.close()
        error("batch", str(exc))
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if bar:
        bar.close()
    for rec in result.records:
        if rec.status == "failed":
            print(f"failed: {rec.input}: {rec.error}", file=sys.stderr)
    print(result.summary())
    if result.was_cancelled:
        print("cancelled: run the same command again to finish the rest.", file=sys.stderr)
        return 130
    if result.all_failed:
        error("batch", f"every photo failed; see {result.manifest_csv}")
        return 1
    return 0
