"""Make the README screenshot from the real application: open a photo, restore it with k cycles,
wait until every cycle and the composite are shown, then grab the window from the screen.

    xvfb-run -s "-screen 0 1600x1000x24" python -m app.gui.screenshot PHOTO docs/screenshot.png --k 3

Run it under a real X server (Xvfb) so that the grab is what a user sees, window frame excepted."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--k", default="3")
    ap.add_argument("--model", type=Path, default=None, help="default: the INT8 CFRNet in models/")
    ap.add_argument("--size", default="1500x940", help="window size WxH")
    ap.add_argument("--face", type=int, default=0, help="the face shown in the per-cycle strip")
    ap.add_argument("--split", type=float, default=0.5)
    ap.add_argument("--mode", default="split", choices=["split", "side", "original", "result"])
    ap.add_argument("--upscale", type=int, default=None, choices=[2, 4])
    ap.add_argument("--time-both", action="store_true", help="press 'Time INT8 vs FP32' first")
    ap.add_argument("--zoom", type=float, default=None, help="zoom factor (default: fit)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--settings", type=Path, default=None, help="a settings file (default: a temporary one)")
    a = ap.parse_args(argv)

    import os
    import tempfile

    tmp = tempfile.mkdtemp(prefix="cfr-shot-")
    os.environ.setdefault("CFR_STUDIO_SETTINGS", str(a.settings or Path(tmp) / "settings.ini"))
    from PySide6.QtWidgets import QApplication

    from app.gui import create_main_window

    w_px, h_px = (int(v) for v in a.size.split("x"))
    window = create_main_window(None, model_path=a.model)
    app = QApplication.instance()
    window.resize(w_px, h_px)
    window.quality.set_k("auto" if a.k == "auto" else int(a.k), emit=False)
    window.settings.k = a.k
    window.quality.set_upscale(a.upscale, emit=False)

    def pump(cond, what: str) -> None:
        t0 = time.monotonic()
        while not cond():
            app.processEvents()
            time.sleep(0.02)
            if time.monotonic() - t0 > a.timeout:
                raise SystemExit(f"timed out waiting for {what}")

    pump(lambda: window.model_info is not None or window.model_error is not None, "the model")
    window.open_path(a.photo)
    pump(lambda: window.photo is not None, "the photo")
    if a.face and a.face < window.quality.face_list.count():
        window.quality.face_list.setCurrentRow(a.face)
    want_k = None if a.k == "auto" else int(a.k)
    pump(lambda: window.worker.idle and window.result is not None
         and (want_k is None or window.result_info.get("k") == want_k), "the restoration")
    if window.device.simulated_path is not None:
        pump(lambda: window.device.simulation is not None or window.device.simulation_error, "the NPU simulation")
    if a.time_both and len(window.device.model_paths) > 1:
        window.device.measure_cpu()
        pump(lambda: len(window.device.cpu_by_precision) >= 2, "the INT8/FP32 timing")
    window.compare.split = a.split
    window.set_view_mode(a.mode)
    if a.zoom:
        window.compare.set_zoom(a.zoom)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    screen = window.screen()
    shot = screen.grabWindow(window.winId())
    if shot.isNull() or shot.width() < 100:
        shot = window.grab()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    ok = shot.save(str(a.out))
    print(f"{a.out}: {shot.width()}×{shot.height()}, k={a.k}, faces={len(window.faces)}, "
          f"model={window.model_info.get('name') if window.model_info else 'none'}")
    window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
