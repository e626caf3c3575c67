"""`cfr-studio --selftest`: prove, headless, that an installation (above all the frozen bundle)
can restore a photo end to end.

It makes a test photo from the real faces shipped in ``resources/`` (four faces from the 1927
Solvay conference photograph, public domain), runs it through the real pipeline
(``app.core.pipeline.restore_file``: MediaPipe detection, alignment, the INT8 CFRNet from
``models/``, paste-back, an atomic save) and checks what came out: enough faces found and
restored, each restored face still like its input but not returned untouched, the written photo
changed on the faces and not elsewhere. Then it checks that the parts of the app the self-test
does not run can at least be imported (the GUI's Qt modules, the NPU simulator). ``--processes``
adds a two-worker process batch (a frozen app must re-enter itself as a worker), ``--gui`` opens
the main window offscreen. Exit code 0 when everything holds, 1 with a message naming the failed
check otherwise. Without ``--gui`` no display and no Qt event loop are involved.

    cfr-studio --selftest [--model PATH] [--processes] [--gui] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIXTURE = "selftest_solvay1927.jpg"  # resources/: a 300×220 greyscale crop with four faces
FIXTURE_FACES = 4
MIN_FACES = 3  # a detector change may lose the smallest face; fewer than this is a failure
UPSCALE = 2  # the crop's faces are ~50 px; ×2 puts them at ~100 px, a typical scanned print
MAT = 48  # px of generated paper around the print: pixels that must come back unchanged
K = 2
MIN_LIKENESS_DB = 15.0  # restored face vs the crop it came from; a black or white face is ~5 dB
MAX_LIKENESS_DB = 60.0  # 0.25 grey levels RMS: no trained INT8 network changes a face this little


class SelftestFailure(Exception):
    """One check failed; the message says which and what was seen."""


def _say(message: str) -> None:
    print(f"selftest: {message}", flush=True)


def make_test_photo(path: Path, seed: int = 0) -> tuple[int, int]:
    """Write the test photo to ``path`` (JPEG): the shipped face crop, scaled ×UPSCALE, aged
    (sepia, grain, a faint scratch) and mounted on a generated paper mat ``MAT`` px wide.
    Returns the print's (x0, y0) inside the photo."""
    import cv2

    from app.core.io import load_image, save_image
    from app.paths import resources_dir

    source = resources_dir() / FIXTURE
    if not source.is_file():
        raise SelftestFailure(f"the self-test photo '{source}' is missing from this installation")
    grey = load_image(source).rgb[..., :3].astype(np.float32).mean(axis=2) / 255.0
    grey = cv2.resize(grey, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    h, w = grey.shape
    aged = np.clip(grey * 0.85 + 0.08 + rng.normal(0.0, 0.02, grey.shape), 0.0, 1.0)
    cv2.line(aged, (int(w * 0.1), int(h * 0.95)), (int(w * 0.35), int(h * 0.6)), 0.92, 1)  # a scratch
    sepia = np.array([1.0, 0.88, 0.70], np.float32)  # warm, faded print
    print_rgb = aged[..., None] * sepia
    paper = np.empty((h + 2 * MAT, w + 2 * MAT, 3), np.float32)
    paper[:] = np.array([0.93, 0.91, 0.85], np.float32) + rng.normal(0.0, 0.01, paper.shape[:2])[..., None]
    paper[MAT:MAT + h, MAT:MAT + w] = print_rgb
    rgb = np.clip(paper * 255.0 + 0.5, 0, 255).astype(np.uint8)
    save_image(path, rgb, quality=92)
    return MAT, MAT


def _check_model(model_path: Path | None):
    from app.core.restorer import Restorer, default_model_path

    path = Path(model_path) if model_path else default_model_path("int8")
    if not path.is_file():
        raise SelftestFailure(f"the INT8 face model '{path}' is missing from this installation")
    restorer = Restorer(path)
    if restorer.precision != "int8":
        raise SelftestFailure(f"'{path}' is a {restorer.precision!r} model; the self-test wants the INT8 one")
    _say(f"model {restorer.name} from {path}")
    return restorer


def _check_result(result, photo_in: np.ndarray, out_path: Path) -> None:
    from app.core.io import load_image

    found = len(result.faces)
    restored = [f for f in result.faces if f.selected and f.cycles]
    _say(f"{found} faces found, {len(restored)} restored with k={K}")
    if found < MIN_FACES:
        raise SelftestFailure(f"only {found} of the {FIXTURE_FACES} faces in the test photo were found "
                              f"(at least {MIN_FACES} expected): face detection is not working")
    if len(restored) != found:
        raise SelftestFailure(f"{found} faces found but {len(restored)} restored")
    from app.core.metrics import psnr
    from app.core.restorer import to_float01

    likeness = []
    for f in restored:
        if len(f.cycles) != K:
            raise SelftestFailure(f"face {f.index}: {len(f.cycles)} cycles ran, {K} asked for")
        last = f.cycles[-1]
        if last.shape != (256, 256, 3) or not np.isfinite(last).all() or last.min() < 0 or last.max() > 1:
            raise SelftestFailure(f"face {f.index}: the model's output is not a 256×256 image in [0, 1]")
        likeness.append(psnr(last, to_float01(f.crop.image), 1.0))
    _say("restored face vs its input crop (PSNR, dB): " + ", ".join(f"{v:.1f}" for v in likeness))
    # A restoration retouches a face, it does not replace it: a broken model or a broken
    # quantisation (DESIGN §10: saturated u8s8 kernels) gives images far from their input.
    if min(likeness) < MIN_LIKENESS_DB:
        raise SelftestFailure(f"a restored face does not resemble its input ({min(likeness):.1f} dB PSNR, "
                              f"at least {MIN_LIKENESS_DB:.0f} dB expected): the model's output is wrong")
    # ... nor gives it back untouched: an untrained export (identity at step 0) would pass every
    # other check, because resampling alone changes the pasted-back face a little.
    if max(likeness) > MAX_LIKENESS_DB:
        raise SelftestFailure(f"the model gave a face back unchanged ({max(likeness):.1f} dB PSNR against its input, "
                              f"at most {MAX_LIKENESS_DB:.0f} dB expected): an untrained or identity model")
    if not out_path.is_file() or out_path.stat().st_size == 0:
        raise SelftestFailure(f"the output '{out_path}' was not written")
    out = load_image(out_path).rgb[..., :3].astype(np.float32)
    before = photo_in[..., :3].astype(np.float32)
    if out.shape != before.shape:
        raise SelftestFailure(f"the output is {out.shape[1]}×{out.shape[0]}, the input {before.shape[1]}×{before.shape[0]}")
    # Each restored face must differ from the input (the network and the paste-back ran) ...
    changes = []
    for f in restored:
        x0, y0, x1, y1 = (int(round(v)) for v in f.face.box)
        box = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        changes.append(float(np.abs(out[box] - before[box]).mean()))
    _say("mean change inside each face box (0-255): " + ", ".join(f"{c:.2f}" for c in changes))
    if min(changes) < 0.5:
        raise SelftestFailure(f"a restored face is unchanged in the written photo (mean change {min(changes):.2f} "
                              "grey levels): the restored faces were not pasted back")
    # ... and the paper mat, far from every face, must come back as it went in (JPEG noise only).
    mat = np.ones(before.shape[:2], bool)
    mat[MAT // 2:-MAT // 2, MAT // 2:-MAT // 2] = False
    border = float(np.abs(out[mat] - before[mat]).mean())
    _say(f"mean change on the paper mat (0-255): {border:.2f}")
    if border > 2.0:
        raise SelftestFailure(f"the photo changed away from the faces (mean {border:.2f} grey levels on the mat)")


def _check_processes(folder: Path, photo: Path, model_path: Path) -> None:
    """A two-file batch in two spawned worker processes: the frozen app must re-enter itself as
    a worker (multiprocessing.freeze_support) and each worker must find the models."""
    import shutil

    from app.core.batch import BatchOptions, run_batch
    from app.core.pipeline import RestoreOptions

    src = folder / "batch-in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copyfile(photo, src / name)
    result = run_batch(src, folder / "batch-out", BatchOptions(
        restore=RestoreOptions(k=1), workers=2, parallel="process", model_path=model_path, threads=1))
    written = sorted(p.name for p in (folder / "batch-out").glob("*.jpg"))
    _say(f"process batch: {result.summary()}")
    if written != ["a.jpg", "b.jpg"] or result.count("done") != 2:
        errors = [f"{r.error}" for r in result.records if r.error]
        raise SelftestFailure(f"the two-process batch wrote {written}, not both files; errors: {errors}")


def _check_gui(folder: Path, photo: Path, model_path: Path) -> None:
    """The real main window, offscreen, opening the test photo: Qt's platform plugins and the
    GUI's modules are in place. Also catches the PySide6 6.12.0 binding that drops a reference to
    None on every void call under Python 3.11 (the GUI then aborts after a few thousand calls)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QEventLoop
    from PySide6.QtWidgets import QApplication, QLabel

    from app.gui import create_main_window
    from app.gui.settings import Settings

    window = create_main_window(photo, model_path=model_path, settings=Settings(folder / "settings.ini"))
    try:
        end = time.monotonic() + 3.0  # let the window open the photo and start its workers
        while time.monotonic() < end:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.02)
        if not window.isVisible():
            raise SelftestFailure("the main window did not show")
        label = QLabel()
        before = sys.getrefcount(None)
        for _ in range(2000):
            label.setText("x")
        lost = before - sys.getrefcount(None)
        if lost > 1000:
            raise SelftestFailure(f"the Qt binding loses a reference to None per call ({lost} in 2000 calls): "
                                  "PySide6 6.12.0 on Python 3.11; bundle 6.11.3")
        _say(f"GUI: main window shown on Qt platform '{QApplication.platformName()}', {window.windowTitle()!r}")
    finally:
        window.shutdown()
        window.close()


IMPORTS = [
    ("app.gui.main_window", "the desktop application (PySide6)"),
    ("app.core.npu", "the NPU simulator of the device panel (onnx)"),
    ("app.core.upscaler", "the super-resolution engine"),
]


def _check_imports() -> list[str]:
    """Import what the test does not run, so a module left out of the bundle is caught here and
    not by a user. The GUI is imported, not started (no display needed)."""
    missing = []
    for module, what in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
            missing.append(f"{module} ({what}): {type(exc).__name__}: {exc}")
    return missing


def run(model: Path | None = None, processes: bool = False, keep: Path | None = None, gui: bool = False) -> None:
    """Every check; raises SelftestFailure (or the engine's own error) at the first that fails."""
    from app import __version__
    from app.core.pipeline import Pipeline, RestoreOptions, restore_file
    from app.paths import is_frozen, models_dir

    started = time.perf_counter()
    _say(f"cfr-studio {__version__}, {'frozen bundle' if is_frozen() else 'from source'}, "
         f"Python {sys.version.split()[0]}, models in {models_dir()}")
    restorer = _check_model(model)
    with tempfile.TemporaryDirectory(prefix="cfr-selftest-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        photo_path = folder / "selftest-in.jpg"
        out_path = folder / "selftest-out.jpg"
        for p in (photo_path, out_path):
            p.unlink(missing_ok=True)
        make_test_photo(photo_path)
        from app.core.io import load_image

        photo_in = load_image(photo_path).rgb
        _say(f"test photo {photo_in.shape[1]}×{photo_in.shape[0]} written to {photo_path}")
        t = time.perf_counter()
        result = restore_file(photo_path, out_path, RestoreOptions(k=K), pipeline=Pipeline(restorer=restorer))
        _say(f"pipeline ran in {time.perf_counter() - t:.1f} s "
             f"({', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())})")
        _check_result(result, photo_in, out_path)
        if processes:
            _check_processes(folder, photo_path, restorer.path)
        if gui:
            _check_gui(folder, photo_path, restorer.path)
    missing = _check_imports()
    if missing:
        raise SelftestFailure("parts of the app cannot be imported: " + "; ".join(missing))
    _say(f"passed in {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cfr-studio --selftest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the INT8 CFRNet to use (default: models/cfrnet_int8.onnx)")
    parser.add_argument("--processes", action="store_true",
                        help="also run a two-file batch in two worker processes")
    parser.add_argument("--gui", action="store_true",
                        help="also open the main window offscreen on the test photo (needs Qt's system libraries)")
    parser.add_argument("--keep", type=Path, help="write the test photo and its result here and keep them")
    args = parser.parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ chatter is not a finding
    try:
        run(args.model, args.processes, args.keep, args.gui)
    except SelftestFailure as exc:
        print(f"selftest: FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - report any error as a failed self-test, with its type
        print(f"selftest: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
