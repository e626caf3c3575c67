"""The desktop application, driven offscreen through its real widgets (pytest-qt), over the real
engine: real photos from tests/data, real MediaPipe detection, real ONNX Runtime sessions of a
tiny CFRNet-contract model built once per session by tests/model_factory.py.

Every test gets its own settings file (CFR_STUDIO_SETTINGS in a temporary folder) and checks, when
its window closes, that no worker thread is left running."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QLabel, QListWidget, QSlider  # noqa: E402

from tests.model_factory import make_cfrnet_like  # noqa: E402

PHOTO = "gui_couple_1940s_deoldify.jpg"  # a 1940s portrait of a couple: two faces, ~190 px
PHOTO_2 = "gui_two_faces_bopb_scratch_d.jpg"
PORTRAIT = "portrait_bopb_old_a.jpg"
WAIT = 30_000  # ms: generous for a loaded 2-core machine; a pass is usually far quicker


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    # tone makes every cycle visibly different from the previous one, even on flat regions
    return make_cfrnet_like(tmp_path_factory.mktemp("models") / "cfrnet_fp32.onnx", "fp32", strength=0.5, tone=0.03)


@pytest.fixture
def settings_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "settings" / "cfr-studio.ini"
    monkeypatch.setenv("CFR_STUDIO_SETTINGS", str(path))
    monkeypatch.setenv("CFR_MODELS", str(tmp_path / "no-models-here"))  # never the user's models
    return path


def _open_window(qtbot, model_path, path=None):
    from app.gui import create_main_window

    window = create_main_window(path, model_path=model_path)
    qtbot.addWidget(window)
    return window


def _close(window) -> None:
    from PySide6.QtCore import QTimer

    window.close()
    active = [(t.parent().metaObject().className(), t.parent().objectName()) for t in window.findChildren(QTimer) if t.isActive()]
    assert not active, f"timers still running after close: {active}"
    assert not window.worker.isRunning(), "the engine thread is still running after close"
    assert window.pool.activeThreadCount() == 0, "a pool task is still running after close"
    bd = window.batch_dialog
    assert bd is None or bd.worker is None or not bd.worker.isRunning()


@pytest.fixture
def window(qtbot, tiny_model, settings_path):
    before = {t.ident for t in threading.enumerate()}
    w = _open_window(qtbot, tiny_model)
    qtbot.waitUntil(lambda: w.model_info is not None, timeout=WAIT)
    yield w
    _close(w)
    assert not _threads_started_since(before), f"threads left running: {_threads_started_since(before)}"


def _threads_started_since(before: set) -> list:
    """Python-visible threads started since ``before`` that still exist in the OS. (A QThread that
    logged leaves a _DummyThread entry in ``threading`` for good; /proc says whether it ended.)"""
    import time

    def os_threads():
        return set(int(t) for t in os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None

    # QThread.wait() returns once run() has returned; the OS thread itself ends a moment later
    deadline = time.monotonic() + 5
    while True:
        alive = os_threads()
        dummies = [t for t in threading.enumerate() if isinstance(t, threading._DummyThread) and t.ident not in before]
        if alive is None or time.monotonic() > deadline or not any(t.native_id in alive for t in dummies):
            break
        time.sleep(0.02)
    left = []
    for t in threading.enumerate():
        if t.ident in before or not t.is_alive():
            continue
        if isinstance(t, threading._DummyThread) and alive is not None and t.native_id not in alive:
            continue
        comm = Path(f"/proc/self/task/{t.native_id}/comm")
        left.append(f"{t!r} ({comm.read_text().strip() if comm.is_file() else '?'})")
    return left


def _wait_result(qtbot, w, **info) -> np.ndarray:
    """Wait until the worker is idle and the shown result matches ``info`` (e.g. k=3)."""

    def ready():
        return w.worker.idle and w.result is not None and all(w.result_info.get(k) == v for k, v in info.items())

    qtbot.waitUntil(ready, timeout=WAIT)
    return w.result


def _open_and_restore(qtbot, w, photo: Path) -> np.ndarray:
    w.open_path(photo)
    qtbot.waitUntil(lambda: w.photo is not None, timeout=WAIT)
    return _wait_result(qtbot, w)


def _box_region(face, shape):
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    h, w = shape[:2]
    return slice(max(0, y0), min(h, y1)), slice(max(0, x0), min(w, x1))


# ---------------------------------------------------------------------------------- the binding
def test_qt_binding_keeps_none_alive(qapp):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every void Qt call, and the
    interpreter aborts after a few thousand (found building this GUI); the pinned binding must not."""
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(3000):
        label.setText("x")
        qapp.processEvents()
    assert sys.getrefcount(None) >= before - 50


# ------------------------------------------------------------------------- open, faces, cycles
def test_open_photo_lists_faces(qtbot, window, test_data):
    assert window.objectName() == "mainWindow"
    face_list = window.findChild(QListWidget, "faceList")
    assert face_list is not None and face_list.count() == 0
    window.open_path(test_data / PHOTO)
    qtbot.waitUntil(lambda: face_list.count() == 2, timeout=WAIT)
    assert all(face_list.item(i).checkState() == Qt.CheckState.Checked for i in range(2))
    assert window.compare.has_image() and len(window.compare.boxes) == 2
    assert "2 faces" in window.faces_label.text()
    assert window.windowTitle().startswith(PHOTO)


def test_slider_to_three_fills_three_cycles_in_order(qtbot, window, test_data, tiny_model):
    from app.core.align import in_print_tone
    from app.core.restorer import Restorer, to_float01
    from app.gui.cycle_preview import THUMB
    from app.gui.imaging import qimage_to_array, thumbnail

    window.quality.set_k(1)
    _open_and_restore(qtbot, window, test_data / PHOTO)
    preview = window.findChild(type(window.preview), "cyclePreview")
    assert [t.objectName() for t in preview.thumbnails()] == ["cycleThumb1"]

    events: list[tuple] = []
    queued = Qt.ConnectionType.QueuedConnection  # delivered on the GUI thread, in emission order
    window.worker.cycleReady.connect(lambda doc, face, j, *rest: events.append(("cycle", face, j)), queued)
    window.worker.resultReady.connect(lambda *a: events.append(("result",)), queued)
    slider = window.findChild(QSlider, "qualitySlider")
    slider.setValue(3)
    _wait_result(qtbot, window, k=3)
    # the window's own slot and this recorder get separate queued events; the worker may post the
    # second after the GUI thread has handled the first, so wait for it too
    qtbot.waitUntil(lambda: ("result",) in events, timeout=WAIT)

    thumbs = preview.thumbnails()
    assert [t.objectName() for t in thumbs] == ["cycleThumb1", "cycleThumb2", "cycleThumb3"]
    xs = [t.mapTo(preview, QPoint(0, 0)).x() for t in thumbs]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert all(isinstance(t, QLabel) and not t.pixmap().isNull() for t in thumbs)
    # only the missing cycles ran (1 was reused), each arriving before the composite
    current = window.quality.current_face()
    assert [e for e in events if e[0] == "cycle" and e[1] == current] == [("cycle", current, 2), ("cycle", current, 3)]
    assert events[-1] == ("result",) and {e[2] for e in events if e[0] == "cycle"} == {2, 3}, events
    # each thumbnail is that cycle of the engine, computed here independently, in the print's
    # tone as paste-back uses it (unchanged on a colour photo)
    crop = window.crops[current].image
    cycles = list(Restorer(tiny_model).restore(crop, 3))
    for j, thumb in enumerate(thumbs):
        shown = qimage_to_array(thumb.pixmap().toImage())
        expected = qimage_to_array(thumbnail(in_print_tone(cycles[j], to_float01(crop)), THUMB))
        assert shown.shape == expected.shape
        assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1
    assert len(preview.deltas()) == 3 and all(d > 0 for d in preview.deltas())

    # lowering k reuses the computed cycles: nothing is recomputed, two thumbnails remain
    events.clear()
    slider.setValue(2)
    _wait_result(qtbot, window, k=2)
    assert [e for e in events if e[0] == "cycle"] == []
    assert len(preview.thumbnails()) == 2

    # clicking a thumbnail shows that cycle in the compare view
    qtbot.mouseClick(thumbs[0], Qt.MouseButton.LeftButton)
    _wait_result(qtbot, window, show_cycle=1)
    assert window.compare.result_label == "Cycle 1"


def test_strip_shows_a_black_and_white_print_in_its_own_tone(qtbot, test_data, tmp_path, settings_path):
    """On a B&W print paste-back keeps the print's tone, so the strip must not show the model's
    colours either: with a model that tints every cycle, each thumbnail of a grey photo is grey."""
    from app.core.io import load_image, save_image
    from app.core.restorer import Restorer
    from app.gui.imaging import qimage_to_array

    tinting = make_cfrnet_like(tmp_path / "tint.onnx", "fp32", strength=0.5, tone=(0.06, 0.0, -0.06))
    rgb = load_image(test_data / PHOTO).rgb
    grey = np.repeat(rgb.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    save_image(tmp_path / "grey.png", grey)
    w = _open_window(qtbot, tinting)
    try:
        qtbot.waitUntil(lambda: w.model_info is not None, timeout=WAIT)
        w.quality.set_k(2)
        _open_and_restore(qtbot, w, tmp_path / "grey.png")
        thumbs = w.preview.thumbnails()
        assert len(thumbs) == 2
        for thumb in thumbs:
            shown = qimage_to_array(thumb.pixmap().toImage()).astype(int)
            assert np.abs(shown[..., 0] - shown[..., 2]).max() <= 2, "a thumbnail of a grey print is coloured"
        # the check means something: the engine's own cycles of this face are tinted
        crop = w.crops[w.quality.current_face()].image
        raw = list(Restorer(tinting).restore(crop, 2))
        assert min(float(np.mean(c[..., 0] - c[..., 2])) for c in raw) > 0.05
        # and the plotted change is the change seen in the strip, not the tint the model adds
        raw_first_change = float(np.mean(np.abs(raw[0] - crop.astype(np.float32) / 255)))
        assert 0 < w.preview.deltas()[0] < raw_first_change
    finally:
        _close(w)


def test_blend_and_face_toggles_change_the_result(qtbot, window, test_data):
    full = _open_and_restore(qtbot, window, test_data / PHOTO).copy()
    original = window.photo.rgb
    f0, f1 = window.faces[0], window.faces[1]
    r0, r1 = _box_region(f0, original.shape), _box_region(f1, original.shape)
    assert not np.array_equal(full[r0], original[r0]) and not np.array_equal(full[r1], original[r1])

    blend = window.findChild(QSlider, "blendSlider")
    blend.setValue(0)
    none = _wait_result(qtbot, window, blend=0.0)
    assert np.array_equal(none, original)
    blend.setValue(50)
    half = _wait_result(qtbot, window, blend=0.5).astype(float)
    d_half = np.abs(half[r0] - original[r0].astype(float)).mean()
    d_full = np.abs(full[r0].astype(float) - original[r0].astype(float)).mean()
    assert 0.2 * d_full < d_half < 0.8 * d_full
    blend.setValue(100)
    _wait_result(qtbot, window, blend=1.0)

    # exclude face 1 by clicking its box in the compare view
    cx, cy = (f0.box[0] + f0.box[2]) / 2, (f0.box[1] + f0.box[3]) / 2
    pos = window.compare.widget_point(cx, cy).toPoint()
    assert window.compare.face_at(QPointF(pos)) == 0
    qtbot.mouseClick(window.compare, Qt.MouseButton.LeftButton, pos=pos)
    assert window.quality.included() == [1]
    one = _wait_result(qtbot, window, cycles={1: 2})
    def change(a, b, region):
        return float(np.abs(a[region].astype(float) - b[region].astype(float)).mean())

    # face 1 is left (almost: face 2's feathered edge reaches into its box) as it was
    assert change(one, original, r0) < 0.2 * change(full, original, r0)
    # face 2 is still restored (its pixels are not the original's; how much they changed depends
    # on face 1's crop, which reaches into face 2's box in this photo)
    assert not np.array_equal(one[r1], original[r1])
    assert not window.compare.included[0]

    # and back in through the list
    window.quality.face_list.item(0).setCheckState(Qt.CheckState.Checked)
    both = _wait_result(qtbot, window, cycles={0: 2, 1: 2})
    assert np.array_equal(both, full)


def test_a_new_request_supersedes_the_one_in_flight(qtbot, window, test_data):
    _open_and_restore(qtbot, window, test_data / PHOTO)
    results = []
    window.worker.resultReady.connect(lambda doc, rgb, info: results.append(info["k"]), Qt.ConnectionType.QueuedConnection)
    for k in (6, 5, 4, 1):  # dragged quickly: only the last one has to be shown
        window.findChild(QSlider, "qualitySlider").setValue(k)
    _wait_result(qtbot, window, k=1)
    assert results[-1] == 1
    assert len(results) < 4  # the superseded requests were cancelled, not all run to the end
    assert len(window.preview.thumbnails()) == 1


def test_auto_stops_at_the_fixed_point(qtbot, window, test_data):
    from app.core.restorer import AUTO_THRESHOLD, MAX_AUTO_CYCLES

    _open_and_restore(qtbot, window, test_data / PHOTO)
    window.findChild(type(window.quality.auto), "autoCheck").setChecked(True)
    assert not window.quality.slider.isEnabled()
    _wait_result(qtbot, window, k="auto")
    used = window.result_info["cycles"]
    for face, n in used.items():
        deltas = window.deltas[face][:n]
        assert 1 <= n <= MAX_AUTO_CYCLES
        # it ran while the face still changed, and stopped at the first cycle that did not
        assert all(d >= AUTO_THRESHOLD for d in deltas[:-1])
        assert n == MAX_AUTO_CYCLES or deltas[-1] < AUTO_THRESHOLD
    current = window.quality.current_face()
    assert len(window.preview.thumbnails()) == used[current]
    assert window.device.k == max(used.values())


def test_no_faces_and_bad_file_are_reported_without_blocking(qtbot, window, tmp_path):
    bad = tmp_path / "letter.jpg"
    bad.write_text("this is not a photograph")
    window.open_path(bad)
    qtbot.waitUntil(lambda: window.error_banner.isVisible(), timeout=WAIT)
    assert "letter.jpg" in window.error_banner.text()
    assert window.isEnabled()  # no modal box: the window stays usable

    flat = tmp_path / "flat.png"
    from app.core.io import save_image

    save_image(flat, np.full((200, 300, 3), 128, np.uint8))
    window.open_path(flat)
    qtbot.waitUntil(lambda: window.photo is not None, timeout=WAIT)
    qtbot.waitUntil(lambda: "No faces" in window.error_banner.text(), timeout=WAIT)
    assert window.quality.face_list.count() == 0


# ------------------------------------------------------------------------------ compare view
def test_compare_view_zoom_at_cursor_split_and_hold_original(qtbot, window, test_data):
    _open_and_restore(qtbot, window, test_data / PHOTO)
    view = window.compare
    assert view.objectName() == "compareView"
    anchor = QPointF(view.width() * 0.3, view.height() * 0.6)
    before = view.image_point(anchor)
    view.set_zoom(view.zoom * 2.5, anchor)
    after = view.image_point(anchor)
    assert abs(before.x() - after.x()) < 1e-6 and abs(before.y() - after.y()) < 1e-6

    # side by side: both panes show the same image point at the same place in the pane
    window.mode_actions["side"].trigger()
    assert view.mode == "side"
    p_left = view.widget_point(100, 100, 0)
    p_right = view.widget_point(100, 100, 1)
    assert abs((p_right.x() - p_left.x()) - view.width() / 2) <= 2 and p_left.y() == p_right.y()

    window.mode_actions["split"].trigger()
    x = int(view.split * view.width())
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(x, view.height() // 2))
    qtbot.mouseMove(view, QPoint(x + 80, view.height() // 2))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(x + 80, view.height() // 2))
    assert abs(view.split * view.width() - (x + 80)) <= 2

    view.setFocus()
    qtbot.keyPress(view, Qt.Key.Key_O)
    assert view.holding_original
    qtbot.keyRelease(view, Qt.Key.Key_O)
    assert not view.holding_original
    slider = window.findChild(QSlider, "qualitySlider")  # the key works with the focus elsewhere too
    slider.setFocus()
    qtbot.keyPress(slider, Qt.Key.Key_O)
    assert view.holding_original
    qtbot.keyRelease(slider, Qt.Key.Key_O)
    assert not view.holding_original


# ------------------------------------------------------------ clipboard, drop, save, export
def test_paste_drop_save_and_export(qtbot, window, test_data, tmp_path):
    from app.core.io import load_image
    from app.gui.imaging import array_to_qimage

    photo = load_image(test_data / PHOTO_2)
    QGuiApplication.clipboard().setImage(array_to_qimage(photo.rgb))
    window.act_paste.trigger()
    qtbot.waitUntil(lambda: window.quality.face_list.count() == 2, timeout=WAIT)
    assert window.path is None and window.photo.rgb.shape == photo.rgb.shape

    copy = tmp_path / "dropped.jpg"
    shutil.copy(test_data / PHOTO, copy)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(copy))])
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    result = _wait_result(qtbot, window)
    assert window.path == copy

    saved = []
    window.save_result(tmp_path / "out" / "restored.png", on_done=saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=WAIT)
    assert np.array_equal(load_image(saved[0]).rgb, result)
    window.save_result(copy)  # the original: refused, named, nothing written
    assert "original" in window.error_banner.text()

    exported = []
    window.export_comparison(tmp_path / "cmp.png", on_done=exported.append)
    qtbot.waitUntil(lambda: bool(exported), timeout=WAIT)
    cmp = load_image(exported[0]).rgb
    h, w = result.shape[:2]
    assert cmp.shape[0] == h and cmp.shape[1] > 2 * w
    assert np.array_equal(cmp[:, :w], window.photo.rgb) and np.array_equal(cmp[:, -w:], result)

    window.act_copy.trigger()
    assert QGuiApplication.clipboard().image().size().width() == w


# --------------------------------------------------------------------------------- the batch
def test_batch_dialog_reports_a_corrupt_file(qtbot, window, test_data, tmp_path):
    src, out = tmp_path / "album", tmp_path / "restored"
    src.mkdir()
    for name in (PHOTO, PHOTO_2, PORTRAIT):
        shutil.copy(test_data / name, src / name)
    data = (test_data / PORTRAIT).read_bytes()
    (src / "corrupt.jpg").write_bytes(data[: len(data) // 3])  # a truncated JPEG

    window.act_batch.trigger()
    dialog = window.batch_dialog
    assert dialog.objectName() == "batchDialog" and dialog.isVisible() and not dialog.isModal()
    dialog.input_edit.setText(str(src))
    dialog.output_edit.setText(str(out))
    dialog.k_combo.setCurrentIndex(dialog.k_combo.findData(2))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None and not dialog.running, timeout=60_000)

    assert dialog.status_of("corrupt.jpg") == "failed"
    for name in (PHOTO, PHOTO_2, PORTRAIT):
        assert dialog.status_of(name) == "done"
        assert (out / name).is_file()
    assert not (out / "corrupt.jpg").exists()
    summary = dialog.summary.text()
    assert "corrupt.jpg" in summary and "1 failed" in summary
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum() == 4
    assert window.settings.folder("batch_in") == str(src)


def test_batch_cancel_stops_promptly(qtbot, window, test_data, tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(12):
        shutil.copy(test_data / PHOTO, src / f"copy_{i:02d}.jpg")
    window.open_batch_dialog()
    dialog = window.batch_dialog
    dialog.input_edit.setText(str(src))
    dialog.output_edit.setText(str(tmp_path / "out"))
    dialog.k_combo.setCurrentIndex(dialog.k_combo.findData(6))
    dialog.start()
    qtbot.waitUntil(lambda: dialog.progress_bar.value() >= 1, timeout=WAIT)
    dialog.cancel()
    qtbot.waitUntil(lambda: dialog.result is not None and not dialog.running, timeout=WAIT)
    assert dialog.result.was_cancelled
    assert dialog.result.count("done") < 12
    assert "Cancelled" in dialog.summary.text()


# ---------------------------------------------------------------------- settings, log, model
def test_settings_persist_between_runs(qtbot, tiny_model, settings_path, test_data):
    from app.gui.settings import Settings

    w = _open_window(qtbot, tiny_model)
    w.findChild(QSlider, "qualitySlider").setValue(3)
    w.findChild(QSlider, "blendSlider").setValue(70)
    w.mode_actions["side"].trigger()
    w.open_path(test_data / PHOTO)
    qtbot.waitUntil(lambda: w.photo is not None, timeout=WAIT)
    w.resize(1000, 700)
    _close(w)

    assert settings_path.is_file()
    s = Settings()
    assert s.path == settings_path
    assert s.k == 3 and abs(s.blend - 0.7) < 1e-9 and s.view_mode == "side"
    assert s.recent_files[0] == str((test_data / PHOTO).resolve())
    assert s.folder("open") == str(test_data)

    w2 = _open_window(qtbot, tiny_model)
    assert w2.findChild(QSlider, "qualitySlider").value() == 3
    assert w2.quality.blend_value == 0.7 and w2.compare.mode == "side"
    assert [a.toolTip() for a in w2.recent_menu.actions()][0] == str((test_data / PHOTO).resolve())
    assert s.geometry is not None and s.window_state is not None  # restored by restoreGeometry/State
    _close(w2)


def test_log_view_text_can_be_copied(qtbot, window, test_data):
    _open_and_restore(qtbot, window, test_data / PHOTO)
    window.act_log.trigger()
    view = window.log_view
    assert view.isVisible() and not view.isModal()
    text = view.text.toPlainText()
    assert "CFR Studio" in text and "2 face(s) found" in text and PHOTO in text
    view.copy_all()
    assert QGuiApplication.clipboard().text() == text


def test_menus_have_standard_shortcuts_and_help_boxes_do_not_block(qtbot, window):
    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QMessageBox

    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Edit", "View", "Help"]
    assert window.act_open.shortcut() == QKeySequence(QKeySequence.StandardKey.Open)
    assert window.act_copy.shortcut() == QKeySequence(QKeySequence.StandardKey.Copy)
    assert window.act_paste.shortcut() == QKeySequence(QKeySequence.StandardKey.Paste)
    assert not window.act_save.shortcut().isEmpty() and not window.act_quit.shortcut().isEmpty()
    window.act_about.trigger()
    window.act_model_info.trigger()
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 2 and not any(b.isModal() for b in boxes)
    assert any("cfrnet-test" in b.text() and "precision" in b.text() for b in boxes)
    for b in boxes:
        b.close()


def test_missing_model_is_explained_and_faces_still_found(qtbot, settings_path, tmp_path, test_data, tiny_model):
    missing = tmp_path / "models" / "cfrnet_int8.onnx"
    w = _open_window(qtbot, missing, test_data / PHOTO)
    qtbot.waitUntil(lambda: w.model_banner.isVisible(), timeout=WAIT)
    text = w.model_banner.text()
    assert "cfrnet_int8.onnx" in text and "missing" in text and "Choose model" in text
    qtbot.waitUntil(lambda: w.quality.face_list.count() == 2, timeout=WAIT)
    assert w.result is None or np.array_equal(w.result, w.photo.rgb)

    # File ▸ Choose model…: the strip goes, the photo is restored, the choice is remembered
    w.set_model(tiny_model)
    result = _wait_result(qtbot, w, k=2)
    assert not w.model_banner.isVisible()
    assert not np.array_equal(result, w.photo.rgb)
    assert w.settings.model_path == str(tiny_model)
    _close(w)


def test_device_panel_is_marked_simulated(qtbot, window, test_data):
    from app.gui.device_panel import DevicePanel, npu_available

    panel = window.findChild(DevicePanel, "devicePanel")
    assert "SIMULATED" in panel.banner.text()
    _open_and_restore(qtbot, window, test_data / PHOTO)
    assert panel.cpu_cycle_seconds, "the CPU time measured while restoring is shown"
    assert panel.current_precision == "fp32"
    col = 2  # this CPU, FP32: the tiny model is FP32
    cpu_per_cycle = panel.cpu_cycle_ms()
    assert panel.table.item(0, col).text() == f"{cpu_per_cycle:,.1f} ms"
    assert panel.table.item(1, col).text() == f"{cpu_per_cycle * 2:,.1f} ms"  # × k = 2
    assert panel.table.item(2, col).text() == f"{cpu_per_cycle * 2 * 2:,.1f} ms"  # × 2 faces
    assert panel.table.item(0, 1).text() == "no model"  # no INT8 file next to it
    if not npu_available():
        pytest.skip("app.core.npu.simulate is not in this tree yet")
    qtbot.waitUntil(lambda: panel.simulation is not None or panel.simulation_error, timeout=WAIT)
    assert panel.simulation_error is None, panel.simulation_error
    sim = panel.simulation
    assert panel.table.item(0, 0).text() == f"{sim.per_inference_ms:,.1f} ms"
    assert panel.table.item(1, 0).text() == f"{sim.per_inference_ms * 2:,.1f} ms"
    assert "assumptions" in panel.assumptions.text().lower() and "Simulated" in panel.assumptions.text()
    panel.layers_button.setChecked(True)
    assert panel.layer_table.isVisible() and panel.layer_table.rowCount() == len(sim.layers) > 0

    panel.measure_button.click()  # INT8 vs FP32 on this CPU (only the FP32 file exists here)
    qtbot.waitUntil(lambda: "fp32" in panel.cpu_by_precision, timeout=WAIT)


@pytest.mark.timeout(180)
def test_command_line_path_opens_in_the_gui(qtbot, qapp, tiny_model, settings_path, test_data, monkeypatch):
    """`cfr-studio PHOTO` (no sub-command) starts the GUI with the photo open (here without any
    model: the app starts and finds faces all the same); closing the window ends the event loop
    and run_app returns 0."""
    from PySide6.QtCore import QTimer

    from app.cli import main

    import time

    seen = {}
    deadline = time.monotonic() + WAIT / 1000

    def watch():
        if time.monotonic() > deadline:  # never hang the test run: give up and close
            for t in qapp.topLevelWidgets():
                t.close()
            return
        w = next((t for t in qapp.topLevelWidgets() if t.objectName() == "mainWindow" and t.isVisible()), None)
        if w is not None and w.quality.face_list.count() == 2:
            seen["faces"] = w.quality.face_list.count()
            seen["path"] = w.path
            # closing the last window ends the event loop; a further quit() here would leave Qt's
            # "quit now" flag set, and every later event loop of the session would return at once
            w.close()
            return
        QTimer.singleShot(50, watch)

    QTimer.singleShot(50, watch)
    assert main([str(test_data / PHOTO)]) == 0
    assert seen == {"faces": 2, "path": test_data / PHOTO}


def _tiny_upscaler(path: Path, scale: int = 2, gain: float = 1.0) -> Path:
    """A SESR-contract ONNX model (luma N×1×H×W in, N×1×sH×sW out, metadata 'scale') that repeats
    each pixel times ``gain``: Conv 1→s² (1×1, weights = gain) then DepthToSpace."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((scale * scale, 1, 1, 1), gain, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]),
         helper.make_node("DepthToSpace", ["c"], ["output"], blocksize=scale, mode="DCR")],
        "tiny_upscaler",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, "SH", "SW"])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"scale": str(scale), "variant": "tiny-repeat", "precision": "fp32"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


def test_upscale_option_restores_faces_at_the_new_size(qtbot, tiny_model, settings_path, tmp_path, test_data, monkeypatch):
    from app.core.io import load_image
    from app.core.upscaler import Upscaler

    models = tmp_path / "models"
    models.mkdir()
    sesr = _tiny_upscaler(models / "sesr_m5_x2_int8.onnx", 2)
    monkeypatch.setenv("CFR_MODELS", str(models))
    w = _open_window(qtbot, tiny_model)
    qtbot.waitUntil(lambda: w.model_info is not None, timeout=WAIT)
    combo = w.quality.upscale_combo
    assert combo.objectName() == "upscaleCombo"
    assert combo.model().item(combo.findData(2)).isEnabled()
    x4 = combo.model().item(combo.findData(4))
    assert not x4.isEnabled() and "sesr_m5_x4_int8.onnx" in x4.toolTip()

    small = _open_and_restore(qtbot, w, test_data / PHOTO)
    h, wd = small.shape[:2]
    scales = []
    w.worker.cycleReady.connect(lambda *a: scales.append(a[-1]), Qt.ConnectionType.QueuedConnection)
    combo.setCurrentIndex(combo.findData(2))
    big = _wait_result(qtbot, w, upscale=2)
    assert big.shape == (2 * h, 2 * wd, 3)
    assert scales and set(scales) == {2}  # the faces were restored again, cut from the larger photo
    assert len(w.preview.thumbnails()) == 2
    # away from the faces the result is the upscaler's output
    plain = Upscaler(sesr).upscale(load_image(test_data / PHOTO).rgb)
    assert np.array_equal(big[:40, :40], plain[:40, :40])
    assert not np.array_equal(big, plain)
    assert w.settings.upscale == 2

    saved = []
    w.save_result(tmp_path / "big.png", on_done=saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=WAIT)
    assert load_image(saved[0]).rgb.shape == big.shape

    combo.setCurrentIndex(combo.findData(None))  # back to the original size: cached, not recomputed
    scales.clear()
    again = _wait_result(qtbot, w, upscale=1)
    assert np.array_equal(again, small) and scales == []
    assert len(w.preview.thumbnails()) == 2  # the strip shows the cycles kept for this size
    _close(w)


def test_upscaling_network_choice_falsr_or_sesr(qtbot, tiny_model, settings_path, tmp_path, test_data, monkeypatch):
    """The upscale box offers SESR (fast, ×2/×4) or FALSR-C (×2 only); switching the network
    upscales again with it, and the choice is remembered."""
    from app.core.io import load_image
    from app.core.upscaler import Upscaler

    models = tmp_path / "models"
    models.mkdir()
    _tiny_upscaler(models / "sesr_m5_x2_int8.onnx", 2)
    _tiny_upscaler(models / "sesr_m5_x4_int8.onnx", 4)
    falsr = _tiny_upscaler(models / "falsr_c_x2_int8.onnx", 2, gain=0.5)  # a darker stand-in
    sesr = models / "sesr_m5_x2_int8.onnx"
    monkeypatch.setenv("CFR_MODELS", str(models))
    w = _open_window(qtbot, tiny_model)
    qtbot.waitUntil(lambda: w.model_info is not None, timeout=WAIT)
    scale_combo, net_combo = w.quality.upscale_combo, w.quality.upscale_model_combo
    assert net_combo.objectName() == "upscaleModelCombo" and w.quality.upscale_model == "sesr"
    assert net_combo.model().item(net_combo.findData("falsr")).isEnabled()
    small = _open_and_restore(qtbot, w, test_data / PHOTO)
    h, wd = small.shape[:2]
    rgb = load_image(test_data / PHOTO).rgb

    scale_combo.setCurrentIndex(scale_combo.findData(4))
    assert _wait_result(qtbot, w, upscale=4).shape == (4 * h, 4 * wd, 3)
    net_combo.setCurrentIndex(net_combo.findData("falsr"))  # ×2 only: the scale follows
    assert w.quality.upscale == 2
    assert not scale_combo.model().item(scale_combo.findData(4)).isEnabled()
    big = _wait_result(qtbot, w, upscale=2, upscale_model="falsr")
    assert big.shape == (2 * h, 2 * wd, 3)
    assert np.array_equal(big[:40, :40], Upscaler(falsr).upscale(rgb)[:40, :40])
    assert w.settings.upscale_model == "falsr"

    net_combo.setCurrentIndex(net_combo.findData("sesr"))  # the ×2 photo is made again with SESR
    assert scale_combo.model().item(scale_combo.findData(4)).isEnabled()
    big = _wait_result(qtbot, w, upscale=2, upscale_model="sesr")
    assert np.array_equal(big[:40, :40], Upscaler(sesr).upscale(rgb)[:40, :40])
    assert "SESR" in w.statusBar().currentMessage()

    # the batch dialog offers the same networks; FALSR reaches the engine as ×2 with its file
    w.act_batch.trigger()
    batch_combo = w.batch_dialog.upscale_combo
    batch_combo.setCurrentIndex(batch_combo.findData("falsr"))
    restore = w.batch_dialog.options().restore
    assert restore.upscale == 2 and restore.upscale_model == falsr
    w.batch_dialog.close()
    _close(w)


def test_no_display_is_said_plainly(monkeypatch, capsys):
    from app.gui import run_app

    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    assert run_app(None) == 2
    assert "no display" in capsys.readouterr().err


def test_k_descriptions_follow_the_models_recommended_cycles():
    from app.gui.quality_panel import k_descriptions

    paper = k_descriptions(2, 3)
    assert "one pass" in paper[1] and "best fidelity" in paper[2] and "perceptual" in paper[3]
    both_at_six = k_descriptions(6, 6)  # what the step-20,935 model's metadata says
    assert "one pass" in both_at_six[1]
    assert "one pass" not in both_at_six[2] and "k = 6" in both_at_six[2]
    assert "best measured quality" in both_at_six[6]
