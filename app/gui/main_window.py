"""The main window: menus, toolbar, status bar, the compare view, the quality panel, the per-cycle
preview, the device panel; opening by menu, drag and drop, clipboard or command line; saving and
exporting; the batch dialog; the log. All engine work goes through EngineWorker (one thread) or
Task (a pool); the GUI thread only sends requests and shows results."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import shiboken6
from PySide6.QtCore import QSize, Qt, QThreadPool
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.compare_view import CompareView
from app.gui.cycle_preview import CyclePreview
from app.gui.device_panel import DevicePanel
from app.gui.imaging import array_to_qimage, qimage_to_array
from app.gui.log_view import LogView, QtLogHandler
from app.gui.quality_panel import QualityPanel
from app.gui.settings import Settings
from app.gui.workers import EngineWorker, OpenJob, ModelJob, RenderJob, Task

log = logging.getLogger("cfr.gui")

def _resources() -> Path:
    try:
        from app.paths import resources_dir  # finds the folder from source and in the bundle

        return Path(resources_dir())
    except ImportError:
        return Path(__file__).resolve().parents[2] / "resources"


RESOURCES = _resources()
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.tif *.tiff *.webp *.bmp);;All files (*)"

_LOG_HANDLER: QtLogHandler | None = None


def log_handler() -> QtLogHandler:
    """One handler per process, attached to the root logger, kept for the log view."""
    global _LOG_HANDLER
    if _LOG_HANDLER is None:
        _LOG_HANDLER = QtLogHandler()
        logging.getLogger().addHandler(_LOG_HANDLER)
        for name in ("cfr", "app"):
            logging.getLogger(name).setLevel(logging.INFO)
    return _LOG_HANDLER


def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("cfr-studio.svg", "cfr-studio.png"):
        p = RESOURCES / name
        if p.is_file():
            icon.addFile(str(p))
    return icon


def model_missing_message(path: Path, error: str) -> str:
    import html

    return (
        f"<b>No restoration model</b> — faces can be found and compared, but not restored.<br>"
        f"{html.escape(error)}<br>"
        f"Expected: <code>{html.escape(str(path))}</code>. Choose a CFRNet ONNX file with "
        "<i>File ▸ Choose model…</i>, or start with <code>cfr-studio</code> after putting the model there."
    )


def upscaler_availability(family: str = "sesr") -> dict[int, str | None]:
    """scale → None where the shipped model of ``family`` exists, else the reason it cannot be
    chosen (FALSR: ×2 only)."""
    out: dict[int, str | None] = {}
    for scale in (2, 4) if family == "sesr" else (2,):
        try:
            from app.core.upscaler import default_upscaler_path

            path = Path(default_upscaler_path(scale, family=family))
            out[scale] = None if path.is_file() else f"The ×{scale} upscaling model {path} is not installed."
        except Exception as exc:  # the upscaler is an optional part of the engine
            out[scale] = f"Upscaling is not available ({exc})."
    return out


class Banner(QFrame):
    """A non-modal message strip over the compare view (errors, a missing model)."""

    def __init__(self, name: str, colour: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setStyleSheet(f"QFrame#{name} {{ background: {colour}; border-radius: 3px; }} QLabel {{ color: #222; }}")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        h = QHBoxLayout(self)
        h.setContentsMargins(8, 4, 4, 4)
        h.addWidget(self.label, 1)
        h.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, html: str) -> None:
        self.label.setText(html)
        self.show()

    def text(self) -> str:
        return self.label.text()


class MainWindow(QMainWindow):
    def __init__(self, model_path: str | Path | None = None, settings: Settings | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("CFR Studio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.settings = settings or Settings()
        self.log_handler = log_handler()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._tasks: set[Task] = set()
        self._closed = False

        # document state (GUI thread only)
        self.doc = 0
        self.path: Path | None = None
        self.photo = None
        self.faces: list = []
        self.crops: list = []
        self.result: np.ndarray | None = None
        self.result_info: dict = {}
        # the cycles shown so far, per scale of the photo (1, or the upscale factor), per face
        self._cycles: dict[int, dict[int, list[np.ndarray]]] = {}
        self._deltas: dict[int, dict[int, list[float]]] = {}
        self.show_cycle: int | None = None
        self.model_info: dict | None = None
        self.model_error: str | None = None
        self.batch_dialog = None
        self.log_view: LogView | None = None

        self._build_widgets()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._restore_settings()

        explicit = model_path or self.settings.model_path or None
        self.model_path = Path(explicit) if explicit else None
        self.worker = EngineWorker(self.model_path, self)
        self.worker.photoReady.connect(self._on_photo_ready)
        self.worker.modelReady.connect(self._on_model_ready)
        self.worker.modelFailed.connect(self._on_model_failed)
        self.worker.cycleReady.connect(self._on_cycle_ready)
        self.worker.resultReady.connect(self._on_result)
        self.worker.failed.connect(self._on_failed)
        self.worker.busyChanged.connect(self._on_busy)
        self.worker.start()
        self._update_actions()
        log.info("CFR Studio %s started", __version__)

    @property
    def scale(self) -> int:
        return int(self.quality.upscale or 1)

    @property
    def cycles(self) -> dict[int, list[np.ndarray]]:
        """face → its cycles so far, for the photo at the current scale."""
        return self._cycles.setdefault(self.scale, {})

    @property
    def deltas(self) -> dict[int, list[float]]:
        return self._deltas.setdefault(self.scale, {})

    def _forget_cycles(self) -> None:
        self._cycles, self._deltas = {}, {}

    # ======================================================================== construction
    def _build_widgets(self) -> None:
        self.compare = CompareView(self)
        self.compare.faceClicked.connect(self._on_face_clicked)
        self.compare.zoomChanged.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f} %"))
        self.compare.holdOriginalChanged.connect(
            lambda on: self.statusBar().showMessage("Showing the original (release O to go back)")
            if on else self.statusBar().clearMessage()
        )
        self.preview = CyclePreview(self)
        self.preview.cycleClicked.connect(self._on_cycle_clicked)
        self.model_banner = Banner("modelBanner", "#ffe1b3", self)
        self.error_banner = Banner("errorBanner", "#f8d0d0", self)

        centre = QWidget(self)
        v = QVBoxLayout(centre)
        v.setContentsMargins(4, 4, 4, 0)
        v.setSpacing(4)
        v.addWidget(self.model_banner)
        v.addWidget(self.error_banner)
        splitter = QSplitter(Qt.Orientation.Vertical, centre)
        splitter.setObjectName("centralSplitter")
        splitter.addWidget(self.compare)
        splitter.addWidget(self.preview)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setCollapsible(0, False)
        v.addWidget(splitter, 1)
        self.setCentralWidget(centre)

        self.quality = QualityPanel(self)
        self.quality.kChanged.connect(self._on_k_changed)
        self.quality.blendChanged.connect(self._on_blend_changed)
        self.quality.faceToggled.connect(self._on_face_toggled)
        self.quality.currentFaceChanged.connect(self._on_current_face)
        self.quality.upscaleChanged.connect(self._on_upscale_changed)
        self.quality.upscaleModelChanged.connect(self._on_upscale_model_changed)
        self.quality.set_upscale_available(
            upscaler_availability(), {"sesr": None, "falsr": upscaler_availability("falsr")[2]})
        self.quality_dock = QDockWidget("Restore", self)
        self.quality_dock.setObjectName("qualityDock")
        self.quality_dock.setWidget(self.quality)
        self.quality_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.quality_dock)

        self.device = DevicePanel(run_task=self.run_task, parent=self)
        self.device_dock = QDockWidget("Device (NPU simulation)", self)
        self.device_dock.setObjectName("deviceDock")
        scroll = QScrollArea(self)
        scroll.setObjectName("deviceScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.device)
        self.device_dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.device_dock)

        sb = self.statusBar()
        sb.setObjectName("statusBar")
        self.busy_bar = QProgressBar(self)
        self.busy_bar.setObjectName("busyBar")
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setMaximumHeight(14)
        self.busy_bar.hide()
        self.faces_label = QLabel("", self)
        self.zoom_label = QLabel("", self)
        self.zoom_label.setMinimumWidth(50)
        sb.addPermanentWidget(self.busy_bar)
        sb.addPermanentWidget(self.faces_label)
        sb.addPermanentWidget(self.zoom_label)

    def _action(self, text, slot, shortcut=None, name=None, tip=None, checkable=False) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, list):
                act.setShortcuts(shortcut)
            else:
                act.setShortcut(QKeySequence(shortcut))
        if name:
            act.setObjectName(name)
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        S = QKeySequence.StandardKey
        self.act_open = self._action("&Open…", self.open_dialog, S.Open, "actionOpen", "Open a photo")
        self.act_save = self._action("&Save As…", self.save_dialog, S.SaveAs, "actionSaveAs", "Save the restored photo")
        if QKeySequence(S.SaveAs).isEmpty():
            self.act_save.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.act_export = self._action("&Export comparison…", self.export_dialog, "Ctrl+E", "actionExport",
                                       "Save the original and the result side by side in one image")
        self.act_batch = self._action("&Batch process folder…", self.open_batch_dialog, "Ctrl+B", "actionBatch",
                                      "Restore every photo in a folder")
        self.act_model = self._action("Choose &model…", self.choose_model_dialog, None, "actionChooseModel",
                                      "Use another CFRNet ONNX file")
        self.act_quit = self._action("&Quit", self.close, S.Quit, "actionQuit")
        if QKeySequence(S.Quit).isEmpty():
            self.act_quit.setShortcut(QKeySequence("Ctrl+Q"))
        self.act_copy = self._action("&Copy result", self.copy_result, S.Copy, "actionCopy", "Copy the restored photo")
        self.act_paste = self._action("&Paste image", self.paste_image, S.Paste, "actionPaste", "Open the image on the clipboard")
        self.act_zoom_in = self._action("Zoom &in", self.compare.zoom_in, [QKeySequence(S.ZoomIn), QKeySequence("Ctrl+=")], "actionZoomIn")
        self.act_zoom_out = self._action("Zoom &out", self.compare.zoom_out, S.ZoomOut, "actionZoomOut")
        self.act_fit = self._action("&Fit to window", self.compare.fit, "Ctrl+0", "actionFit")
        self.act_actual = self._action("&100 %", self.compare.actual_size, "Ctrl+1", "actionActualSize")
        self.mode_group = QActionGroup(self)
        self.mode_actions: dict[str, QAction] = {}
        for mode, text, key in (
            ("split", "&Split view", "Ctrl+2"),
            ("side", "Side &by side", "Ctrl+3"),
            ("original", "&Original only", "Ctrl+4"),
            ("result", "&Result only", "Ctrl+5"),
        ):
            act = self._action(text, lambda checked=False, m=mode: self.set_view_mode(m), key, f"actionMode_{mode}", checkable=True)
            self.mode_group.addAction(act)
            self.mode_actions[mode] = act
        self.act_about = self._action("&About CFR Studio", self.show_about, None, "actionAbout")
        self.act_model_info = self._action("&Model information", self.show_model_info, None, "actionModelInfo")
        self.act_log = self._action("Show &log", self.show_log, "Ctrl+L", "actionShowLog")

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.setObjectName("recentMenu")
        m.addSeparator()
        m.addAction(self.act_save)
        m.addAction(self.act_export)
        m.addSeparator()
        m.addAction(self.act_batch)
        m.addAction(self.act_model)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addAction(self.act_copy)
        m.addAction(self.act_paste)
        m = mb.addMenu("&View")
        for a in (self.act_zoom_in, self.act_zoom_out, self.act_fit, self.act_actual):
            m.addAction(a)
        m.addSeparator()
        for a in self.mode_actions.values():
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.quality_dock.toggleViewAction())
        m.addAction(self.device_dock.toggleViewAction())
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)
        m.addAction(self.act_model_info)
        m.addAction(self.act_log)
        self._rebuild_recent()

        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolBar")
        tb.setIconSize(QSize(20, 20))
        style = self.style()
        from PySide6.QtWidgets import QStyle

        icons = {
            self.act_open: QStyle.StandardPixmap.SP_DialogOpenButton,
            self.act_save: QStyle.StandardPixmap.SP_DialogSaveButton,
            self.act_batch: QStyle.StandardPixmap.SP_DirIcon,
        }
        for act, sp in icons.items():
            act.setIcon(style.standardIcon(sp))
        for a in (self.act_open, self.act_save, self.act_export, None, self.act_copy, self.act_paste, None,
                  self.act_zoom_in, self.act_zoom_out, self.act_fit, self.act_actual, None):
            tb.addSeparator() if a is None else tb.addAction(a)
        for a in self.mode_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.act_batch)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

    def _restore_settings(self) -> None:
        s = self.settings
        self.resize(1440, 900)
        if s.geometry is not None:
            self.restoreGeometry(s.geometry)
        if s.window_state is not None:
            self.restoreState(s.window_state)
        else:  # the quality panel as tall as it needs, the device panel the rest
            self.resizeDocks([self.quality_dock, self.device_dock], [self.quality.sizeHint().height(), 2000],
                             Qt.Orientation.Vertical)
            self.resizeDocks([self.quality_dock], [460], Qt.Orientation.Horizontal)
        self.quality.set_k(s.k, emit=False)
        self.quality.set_blend(s.blend, emit=False)
        self.quality.set_upscale_model(s.upscale_model, emit=False)
        self.quality.set_upscale(s.upscale, emit=False)
        self.set_view_mode(s.view_mode)
        self.preview.show_up_to(6 if s.k == "auto" else int(s.k))

    # ============================================================================= tasks
    def run_task(self, fn, *args, on_done=None, on_failed=None, **kwargs):
        """Run ``fn(*args, **kwargs)`` in the window's pool; the callbacks run on the GUI thread."""
        task = Task(fn, *args, **kwargs)
        self._tasks.add(task)

        def finish(_=None):
            self._tasks.discard(task)

        def alive(callback):
            # the callbacks are plain functions, which Qt does not disconnect when the window goes:
            # a task finishing after close must not touch its deleted widgets
            def call(*args):
                if not self._closed and shiboken6.isValid(self):
                    callback(*args)
            return call

        if on_done is not None:
            task.signals.done.connect(alive(on_done))
        task.signals.failed.connect(alive(on_failed if on_failed is not None else self.show_error))
        task.signals.done.connect(finish)
        task.signals.failed.connect(finish)
        self.pool.start(task)
        return task

    # ============================================================================ opening
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a photo", self.settings.folder("open"), IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> None:
        path = Path(path)
        self.settings.set_folder("open", path.parent)
        self._start_document(path.name)
        self.path = path
        self.worker.submit(OpenJob(self.doc, path=path))
        self.settings.add_recent(path)
        self._rebuild_recent()

    def open_photo(self, photo, name: str = "pasted image") -> None:
        self._start_document(name)
        self.path = None
        self.worker.submit(OpenJob(self.doc, photo=photo))

    def _start_document(self, name: str) -> None:
        self.doc += 1
        self.error_banner.hide()
        self.photo, self.faces, self.crops, self.result = None, [], [], None
        self._forget_cycles()
        self.show_cycle = None
        self.compare.set_images(None)
        self.compare.empty_text = f"Opening {name}…"
        self.quality.set_faces([])
        self.preview.reset(None)
        self.faces_label.setText("")
        self.setWindowTitle(f"{name} — CFR Studio")
        self._update_actions()

    def paste_image(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasUrls():
            local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
            if local:
                self.open_path(local[0])
                return
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.show_error("The clipboard holds no image to paste.")
            return
        from app.core.io import ImageMeta, Photo

        rgb = qimage_to_array(image)
        meta = ImageMeta(path=None, format="PNG", mode="RGB", bit_depth=8)
        self.open_photo(Photo(rgb=rgb, alpha=None, meta=meta))

    def dragEnterEvent(self, event) -> None:
        if self._dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        path = self._dropped_path(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.open_path(path)

    @staticmethod
    def _dropped_path(mime) -> Path | None:
        if mime is None or not mime.hasUrls():
            return None
        from app.core.io import is_supported_image

        for url in mime.urls():
            if url.isLocalFile() and is_supported_image(Path(url.toLocalFile())):
                return Path(url.toLocalFile())
        return None

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files
        for f in files:
            act = self.recent_menu.addAction(Path(f).name)
            act.setToolTip(f)
            act.setStatusTip(f)
            act.triggered.connect(lambda checked=False, p=f: self.open_path(p))
        if files:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear the list")
            clear.triggered.connect(lambda: (self.settings.clear_recent(), self._rebuild_recent()))
        self.recent_menu.setEnabled(bool(files))

    # ==================================================================== worker results
    def _on_photo_ready(self, doc, photo, faces, crops, qimage=None) -> None:
        if doc != self.doc:
            return
        self.photo, self.faces, self.crops = photo, list(faces), list(crops)
        self.compare.empty_text = ""
        self.compare.set_images(qimage if qimage is not None else photo.rgb, None)
        self.compare.result_label = "Restored"
        self.quality.set_faces(self.faces)
        self._update_boxes()
        n = len(self.faces)
        self.faces_label.setText(f"{n} face{'s' if n != 1 else ''}")
        name = self.path.name if self.path else "the pasted image"
        h, w = photo.rgb.shape[:2]
        for warning in getattr(photo.meta, "warnings", []) or []:
            log.warning("%s: %s", name, warning)
        if n == 0:
            self.preview.reset(None)
            self.show_error(f"No faces were found in {name}. Nothing to restore; the photo is shown as it is.")
        else:
            self.preview.reset(self.crops[0].image, 0)
            self.device.set_crop(self.crops[0].image)
            self.statusBar().showMessage(f"{name}: {w}×{h}, {n} face{'s' if n != 1 else ''} found", 8000)
        self._update_workload()
        self._update_actions()
        self.request_render()

    def _on_model_ready(self, info: dict) -> None:
        self.model_info, self.model_error = info, None
        self.model_banner.hide()
        meta = info.get("metadata", {})
        try:
            self.quality.set_recommended(int(meta.get("recommended_k_psnr", 2)), int(meta.get("recommended_k_lpips", 3)))
        except (TypeError, ValueError):
            pass
        log.info("model %s (%s) from %s", info.get("name"), info.get("precision"), info.get("path"))
        self.device.set_models(self._model_files(info), str(info.get("precision", "int8")))
        self._update_actions()
        self.request_render()

    def _model_files(self, info: dict) -> dict[str, Path]:
        files: dict[str, Path] = {}
        try:
            from app.core.restorer import default_model_path

            for precision in ("int8", "fp32"):
                p = Path(default_model_path(precision))
                if p.is_file():
                    files[precision] = p
        except Exception:
            pass
        precision = str(info.get("precision", "int8")).lower()
        files[precision if precision in ("int8", "fp32") else "int8"] = Path(info["path"])
        return files

    def _on_model_failed(self, text: str) -> None:
        self.model_info, self.model_error = None, text
        try:
            from app.core.restorer import default_model_path

            path = self.model_path or Path(default_model_path("int8"))
        except Exception:
            path = self.model_path or Path("models/cfrnet_int8.onnx")
        self.model_banner.show_message(model_missing_message(path, text))
        log.warning("model not available: %s", text)
        self.statusBar().showMessage("No restoration model: faces can be viewed but not restored", 10000)
        self._update_actions()

    def _on_cycle_ready(self, doc, face, cycle, image, delta, seconds, scale=1) -> None:
        if doc != self.doc:
            return  # a late cycle of another photo
        cache = self._cycles.setdefault(scale, {}).setdefault(face, [])
        deltas = self._deltas.setdefault(scale, {}).setdefault(face, [])
        if len(cache) == cycle - 1:
            cache.append(image)
            deltas.append(delta)
        self.device.add_cpu_cycle(seconds)
        if face == self.quality.current_face() and scale == self.scale:
            k = self.quality.k
            if k == "auto" or cycle <= int(k):
                self.preview.set_cycle(cycle, image, delta, seconds)

    def _on_result(self, doc, rgb, info) -> None:
        if doc != self.doc:
            return
        self.result, self.result_info = rgb, dict(info)
        shown = info.get("show_cycle")
        self.compare.result_label = f"Cycle {shown}" if shown else "Restored"
        self.compare.set_result(info.pop("qimage", None) or rgb)
        used = info.get("cycles", {})
        self._update_workload()
        if used:
            ks = sorted(set(used.values()))
            ktext = ", ".join(map(str, ks))
            up = info.get("upscale", 1)
            self.statusBar().showMessage(
                f"Restored {len(used)} face{'s' if len(used) != 1 else ''} with k = {ktext}"
                f"{' (auto)' if info.get('k') == 'auto' else ''}, blend {info.get('blend', 1.0) * 100:.0f} %"
                + (f", upscaled ×{up} ({'FALSR-C' if info.get('upscale_model') == 'falsr' else 'SESR'}) to "
                   f"{rgb.shape[1]}×{rgb.shape[0]}" if up and up > 1 else ""),
                8000,
            )
        self._update_actions()

    def _on_failed(self, doc: int, text: str) -> None:
        if doc not in (self.doc, -1):
            return
        self.show_error(text)
        if self.photo is None:
            self.compare.empty_text = "Open a photo (Ctrl+O), drop one here, or paste one (Ctrl+V)"
            self.compare.update()
            self.setWindowTitle("CFR Studio")

    def _on_busy(self, busy: bool, text: str) -> None:
        self.busy_bar.setVisible(busy)
        if busy and text:
            self.statusBar().showMessage(text)

    def show_error(self, text: str) -> None:
        """Errors never block the window: a dismissable strip, the status bar and the log."""
        import html

        self.error_banner.show_message(html.escape(text))
        self.statusBar().showMessage(text, 15000)
        log.error("%s", text)

    # ======================================================================= restoration
    def request_render(self) -> None:
        if self.photo is None or self.model_info is None or not self.faces:
            if self.photo is not None and not self.faces:
                self.result = self.photo.rgb
            return
        current = self.quality.current_face()
        job = RenderJob(
            doc=self.doc,
            k=self.quality.k,
            included=self.quality.included(),
            blend=self.quality.blend_value,
            current=current if current >= 0 else 0,
            show_cycle=self.show_cycle,
            upscale=self.quality.upscale,
            upscale_model=self.quality.upscale_model,
        )
        self.worker.submit(job)

    def _on_k_changed(self, k) -> None:
        self.settings.k = k
        self.show_cycle = None
        self.preview.set_selected(-1)
        self.preview.show_up_to(6 if k == "auto" else int(k))
        self._refill_preview()
        self._update_workload()
        self.request_render()

    def _on_upscale_changed(self, scale) -> None:
        self.settings.upscale = scale
        self.show_cycle = None
        face = self.quality.current_face()
        if 0 <= face < len(self.crops):  # faces cut from the upscaled photo have cycles of their own
            self.preview.reset(self.crops[face].image, face)
            self._refill_preview()
        self.request_render()

    def _on_upscale_model_changed(self, family: str) -> None:
        self.settings.upscale_model = family
        # the upscaled photo and the faces cut from it change: drop their cycles (the worker
        # re-upscales with the other network on the next render)
        for scale in [s for s in self._cycles if s > 1]:
            self._cycles.pop(scale, None)
            self._deltas.pop(scale, None)
        self._on_upscale_changed(self.quality.upscale)

    def _on_blend_changed(self, blend: float) -> None:
        self.settings.blend = blend
        self.request_render()

    def _on_face_toggled(self, index: int, on: bool) -> None:
        self._update_boxes()
        self._update_workload()
        self.request_render()

    def _on_face_clicked(self, index: int) -> None:
        self.quality.face_list.setCurrentRow(index)
        self.quality.toggle_face(index)

    def _on_current_face(self, index: int) -> None:
        if 0 <= index < len(self.crops):
            self.preview.reset(self.crops[index].image, index)
            self.device.set_crop(self.crops[index].image)
            self._refill_preview()
            self._update_boxes()
            self.request_render()  # computes this face's cycles first (or at all, if excluded)

    def _refill_preview(self) -> None:
        face = self.quality.current_face()
        k = self.quality.k
        limit = 6 if k == "auto" else int(k)
        for j, (img, d) in enumerate(zip(self.cycles.get(face, []), self.deltas.get(face, [])), start=1):
            if j <= limit:
                self.preview.set_cycle(j, img, d)
        self.preview.show_up_to(limit)

    def _on_cycle_clicked(self, cycle: int) -> None:
        if self.photo is None:
            return
        if cycle == 0:
            self.show_cycle = None
            self.compare.result_label = "Input"
            self.compare.set_result(self.photo.rgb)
            self.statusBar().showMessage("Showing the input: click a cycle to see it", 5000)
            return
        k = self.quality.k
        self.show_cycle = None if (k != "auto" and cycle == int(k)) else cycle
        self.statusBar().showMessage(f"Showing cycle {cycle} for every restored face", 5000)
        self.request_render()

    def _update_boxes(self) -> None:
        included = set(self.quality.included())
        self.compare.set_faces([f.box for f in self.faces], [i in included for i in range(len(self.faces))],
                               self.quality.current_face())

    def _update_workload(self) -> None:
        k = self.quality.k
        if k == "auto":
            used = self.result_info.get("cycles", {})
            k_eff = max(used.values()) if used else 6
        else:
            k_eff = int(k)
        self.device.set_workload(k_eff, len(self.quality.included()))

    # ===================================================================== save, export
    def _default_save_name(self, suffix: str) -> str:
        folder = self.settings.folder("save") or (str(self.path.parent) if self.path else "")
        stem = self.path.stem if self.path else "pasted"
        ext = self.path.suffix if self.path else ".png"
        name = f"{stem}{suffix}{ext}"
        return str(Path(folder) / name) if folder else name

    def save_dialog(self) -> None:
        if self.result is None:
            self.show_error("Nothing to save yet: open a photo and let it restore first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the restored photo", self._default_save_name("_restored"), IMAGE_FILTER)
        if path:
            self.save_result(path)

    def save_result(self, path: str | Path, on_done=None):
        """Save the current result (in the pool); refuses to overwrite the original photo."""
        path = Path(path)
        if self.result is None or self.photo is None:
            self.show_error("Nothing to save yet.")
            return None
        original = getattr(self.photo.meta, "path", None)
        if original is not None and path.resolve() == Path(original).resolve():
            self.show_error(f"{path}: that is the original photo; choose another name so the original is kept.")
            return None
        from app.core.io import save_image, Photo

        self.settings.set_folder("save", path.parent)
        alpha = self.photo.alpha
        if alpha is not None and alpha.shape[:2] != self.result.shape[:2]:  # an upscaled result
            import cv2

            alpha = cv2.resize(alpha, (self.result.shape[1], self.result.shape[0]), interpolation=cv2.INTER_LINEAR)
        photo = Photo(rgb=self.result, alpha=alpha, meta=self.photo.meta)

        def done(warnings):
            for w in warnings or []:
                log.warning("%s: %s", path.name, w)
            self.statusBar().showMessage(f"Saved {path}", 8000)
            log.info("saved %s", path)
            if on_done:
                on_done(path)

        # the file dialog has already asked before replacing an existing file
        return self.run_task(save_image, path, photo, like=self.photo.meta, overwrite=True, on_done=done)

    def export_dialog(self) -> None:
        if self.result is None:
            self.show_error("Nothing to export yet: open a photo and let it restore first.")
            return
        stem = self.path.stem if self.path else "pasted"
        start = str(Path(self.settings.folder("export") or ".") / f"{stem}_comparison.jpg")
        path, _ = QFileDialog.getSaveFileName(self, "Export the comparison", start, IMAGE_FILTER)
        if path:
            self.export_comparison(path)

    def comparison_image(self) -> np.ndarray:
        """Original | result side by side with a white gutter, in the photo's dtype."""
        a, b = self.photo.rgb, self.result
        if a.shape[:2] != b.shape[:2]:  # an upscaled result: the original enlarged to match, plainly
            import cv2

            a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_CUBIC)
        gap = max(4, a.shape[1] // 100)
        white = np.iinfo(a.dtype).max if a.dtype.kind == "u" else 1.0
        gutter = np.full((a.shape[0], gap, 3), white, dtype=a.dtype)
        return np.concatenate([a, gutter, b.astype(a.dtype, copy=False)], axis=1)

    def export_comparison(self, path: str | Path, on_done=None):
        path = Path(path)
        if self.result is None:
            self.show_error("Nothing to export yet.")
            return None
        from app.core.io import save_image

        self.settings.set_folder("export", path.parent)
        image = self.comparison_image()

        def done(_):
            self.statusBar().showMessage(f"Exported the comparison to {path}", 8000)
            if on_done:
                on_done(path)

        return self.run_task(save_image, path, image, overwrite=True, on_done=done)

    def copy_result(self) -> None:
        image = self.result if self.result is not None else (self.photo.rgb if self.photo is not None else None)
        if image is None:
            self.show_error("Nothing to copy yet.")
            return
        QGuiApplication.clipboard().setImage(array_to_qimage(image))
        self.statusBar().showMessage("Copied the restored photo to the clipboard", 5000)

    # ======================================================================= model, view
    def choose_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a CFRNet model", self.settings.folder("model"), "ONNX models (*.onnx)")
        if path:
            self.set_model(path)

    def set_model(self, path: str | Path) -> None:
        self.model_path = Path(path)
        self.settings.model_path = str(path)
        self.settings.set_folder("model", Path(path).parent)
        self._forget_cycles()
        if 0 <= self.quality.current_face() < len(self.crops):
            self.preview.reset(self.crops[self.quality.current_face()].image, self.quality.current_face())
        if self.batch_dialog is not None:
            self.batch_dialog.model_path = self.model_path
        self.worker.submit(ModelJob(self.model_path))
        self.request_render()

    def set_view_mode(self, mode: str) -> None:
        self.compare.set_mode(mode)
        self.mode_actions[mode].setChecked(True)
        self.settings.view_mode = mode

    def _update_actions(self) -> None:
        has_result = self.result is not None
        self.act_save.setEnabled(has_result)
        self.act_export.setEnabled(has_result)
        self.act_copy.setEnabled(self.photo is not None)

    def show_about(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "About CFR Studio",
                          f"<h3>CFR Studio {__version__}</h3><p>Restores faces in old photographs with CFRNet, "
                          "a small CNN trained with cycle-consistent fixed-point training: the number of "
                          "cycles k is a quality knob (k = 2 best fidelity, k = 3 best perceptual quality).</p>"
                          "<p>Faces: MediaPipe. Inference: ONNX Runtime on the CPU. NPU figures are simulated.</p>",
                          QMessageBox.StandardButton.Close, self)
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    def model_info_text(self) -> str:
        if self.model_info is None:
            return self.model_error or "No model is loaded."
        info = self.model_info
        lines = [f"File: {info['path']}", f"Name: {info.get('name')}", f"Precision: {info.get('precision')}"]
        for key, value in sorted(info.get("metadata", {}).items()):
            lines.append(f"{key}: {value}")
        return "\n".join(lines)

    def show_model_info(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Model information", self.model_info_text(),
                          QMessageBox.StandardButton.Close, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    def show_log(self) -> None:
        if self.log_view is None:
            self.log_view = LogView(self.log_handler, self)
        self.log_view.show()
        self.log_view.raise_()

    def open_batch_dialog(self) -> None:
        from app.gui.batch_dialog import BatchDialog

        if self.batch_dialog is None:
            self.batch_dialog = BatchDialog(self.settings, model_path=self.model_path, parent=self)
        self.batch_dialog.show()
        self.batch_dialog.raise_()

    def keyPressEvent(self, event) -> None:
        # O held shows the original wherever the focus is (a key a focused child ignores ends here)
        from app.gui.compare_view import HOLD_KEY

        if event.key() == HOLD_KEY and not event.isAutoRepeat() and self.compare.has_image():
            self.compare.set_holding_original(True)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        from app.gui.compare_view import HOLD_KEY

        if event.key() == HOLD_KEY and not event.isAutoRepeat():
            self.compare.set_holding_original(False)
            return
        super().keyReleaseEvent(event)

    # ============================================================================ closing
    def closeEvent(self, event) -> None:
        if self._closed:
            event.accept()
            return
        self._closed = True
        s = self.settings
        s.geometry = self.saveGeometry()
        s.window_state = self.saveState()
        s.k = self.quality.k
        s.blend = self.quality.blend_value
        s.upscale = self.quality.upscale
        s.upscale_model = self.quality.upscale_model
        s.sync()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker: cancel what runs, wait for the threads to end."""
        self.statusBar().showMessage("", 0)  # a timeout of 0 deletes the status bar's message timer
        self.statusBar().clearMessage()
        self.busy_bar.hide()
        if self.batch_dialog is not None:
            self.batch_dialog.stop()
        self.worker.stop()
        self.pool.clear()
        self.pool.waitForDone(30000)
        if self.log_view is not None:
            self.log_view.close()
