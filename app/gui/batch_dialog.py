"""Batch dialog: a folder of photos → an output folder, with app.core.batch.run_batch doing the
work in a QThread. Input and output folders, k, recursion, output format, what to do with outputs
that exist; a progress bar with an ETA, a per-file status list, a cancel that stops at the next
cycle, and a summary that lists the failures. Non-modal: the main window stays usable."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.workers import describe_error

log = logging.getLogger("cfr.gui.batch")

FORMATS = [("Same as the input", "same"), ("JPEG", "jpg"), ("PNG", "png"), ("TIFF", "tif"), ("WebP", "webp")]
EXISTING = [
    ("Skip them (resume an earlier run)", "skip"),
    ("Write alongside with a new name", "rename"),
    ("Replace them", "overwrite"),
]
STATUS_TEXT = {"waiting": "waiting", "done": "restored", "skipped": "skipped", "failed": "FAILED", "cancelled": "cancelled"}


def _batch_fields() -> set[str]:
    from app.core.batch import BatchOptions

    return {f.name for f in dataclasses.fields(BatchOptions)}


class BatchWorker(QThread):
    planned = Signal(object)  # list of input paths relative to the input folder
    progress = Signal(int, int, str)
    finishedBatch = Signal(object)  # BatchResult
    failed = Signal(str)

    def __init__(self, input_dir: Path, output_dir: Path, options, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("batchWorker")
        self.input_dir, self.output_dir, self.options = Path(input_dir), Path(output_dir), options
        self.cancel_event = threading.Event()

    def run(self) -> None:
        from app.core import batch

        try:
            found = batch.find_images(self.input_dir, self.options.recursive, exclude=self.output_dir)
            self.planned.emit([p.relative_to(self.input_dir).as_posix() for p in found])
            result = batch.run_batch(
                self.input_dir, self.output_dir, self.options,
                progress=lambda d, t, m: self.progress.emit(int(d), int(t), str(m)),
                cancel=self.cancel_event,
            )
        except Exception as exc:  # a problem with the whole batch (folders, model)
            self.failed.emit(describe_error(exc))
        else:
            self.finishedBatch.emit(result)


class BatchDialog(QDialog):
    def __init__(self, settings, model_path: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("batchDialog")
        self.setWindowTitle("Batch process a folder — CFR Studio")
        self.setModal(False)
        self.resize(760, 560)
        self.settings = settings
        self.model_path = model_path
        self.worker: BatchWorker | None = None
        self.result = None
        self.rows: dict[str, int] = {}
        self._t_start = 0.0
        self._done_at_start: int | None = None

        self.input_edit = QLineEdit(settings.folder("batch_in"), self)
        self.input_edit.setObjectName("batchInput")
        self.output_edit = QLineEdit(settings.folder("batch_out"), self)
        self.output_edit.setObjectName("batchOutput")
        in_row = self._folder_row(self.input_edit, "Choose the folder of photos")
        out_row = self._folder_row(self.output_edit, "Choose where the restored photos go")

        self.k_combo = QComboBox(self)
        self.k_combo.setObjectName("batchK")
        for k in range(1, 7):
            hint = {2: " — best fidelity", 3: " — best perceptual quality"}.get(k, "")
            self.k_combo.addItem(f"{k}{hint}", k)
        self.k_combo.addItem("auto — stop at the fixed point", "auto")
        k = settings.batch_option("k", str(settings.k))
        idx = self.k_combo.findData("auto" if k == "auto" else int(k) if str(k).isdigit() else 2)
        self.k_combo.setCurrentIndex(max(0, idx))
        self.recursive = QCheckBox("Include sub-folders (the output mirrors them)", self)
        self.recursive.setObjectName("batchRecursive")
        self.recursive.setChecked(settings.batch_option("recursive", False))
        self.format_combo = QComboBox(self)
        self.format_combo.setObjectName("batchFormat")
        for text, value in FORMATS:
            self.format_combo.addItem(text, value)
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(settings.batch_option("format", "same"))))
        self.quality_spin = QSpinBox(self)
        self.quality_spin.setObjectName("batchQuality")
        self.quality_spin.setRange(50, 100)
        self.quality_spin.setValue(settings.batch_option("quality", 95))
        self.quality_spin.setSuffix("  (JPEG/WebP)")
        self._quality_supported = "quality" in _batch_fields()
        if not self._quality_supported:
            self.quality_spin.setEnabled(False)
            self.quality_spin.setToolTip("The engine writes JPEG/WebP at its default quality (95).")
        self.upscale_combo = QComboBox(self)
        self.upscale_combo.setObjectName("batchUpscale")
        self.upscale_combo.addItem("No", None)
        self.upscale_combo.addItem("×2 (SESR)", 2)
        self.upscale_combo.addItem("×4 (SESR)", 4)
        self.upscale_combo.addItem("×2 best quality (FALSR-C, slower)", "falsr")
        from app.gui.main_window import upscaler_availability

        reasons = dict(upscaler_availability())
        reasons["falsr"] = upscaler_availability("falsr")[2]
        for data, reason in reasons.items():
            item = self.upscale_combo.model().item(self.upscale_combo.findData(data))
            item.setEnabled(reason is None)
            item.setToolTip(reason or "")
        self.existing_combo = QComboBox(self)
        self.existing_combo.setObjectName("batchExisting")
        for text, value in EXISTING:
            self.existing_combo.addItem(text, value)
        self.existing_combo.setCurrentIndex(max(0, self.existing_combo.findData(settings.batch_option("existing", "skip"))))

        form = QFormLayout()
        form.addRow("Photos in:", in_row)
        form.addRow("Restored photos to:", out_row)
        form.addRow("Cycles (k):", self.k_combo)
        form.addRow("", self.recursive)
        form.addRow("Upscale:", self.upscale_combo)
        form.addRow("Output format:", self.format_combo)
        form.addRow("Quality:", self.quality_spin)
        form.addRow("Existing outputs:", self.existing_combo)

        self.progress_bar = QProgressBar(self)
        self.progress_bar.setObjectName("batchProgress")
        self.progress_bar.setValue(0)
        self.eta_label = QLabel("", self)
        self.eta_label.setObjectName("batchEta")
        self.table = QTableWidget(0, 4, self)
        self.table.setObjectName("batchFiles")
        self.table.setHorizontalHeaderLabels(["Photo", "Status", "Faces", "Details"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 260)
        self.summary = QLabel("", self)
        self.summary.setObjectName("batchSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.start_button = QPushButton("Start", self)
        self.start_button.setObjectName("batchStart")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("batchCancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close", self)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.eta_label, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)

    def _folder_row(self, edit: QLineEdit, title: str) -> QWidget:
        row = QWidget(self)
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        browse = QPushButton("Browse…", row)
        browse.clicked.connect(lambda: self._browse(edit, title))
        h.addWidget(edit, 1)
        h.addWidget(browse)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    # ----------------------------------------------------------------------------- run
    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def options(self):
        from app.core.batch import BatchOptions
        from app.core.pipeline import RestoreOptions

        upscale, upscale_model = self.upscale_combo.currentData(), None
        if upscale == "falsr":
            from app.core.upscaler import default_upscaler_path

            upscale, upscale_model = 2, default_upscaler_path(2, family="falsr")
        kwargs = dict(
            restore=RestoreOptions(k=self.k_combo.currentData(), upscale=upscale, upscale_model=upscale_model),
            recursive=self.recursive.isChecked(),
            output_format=self.format_combo.currentData(),
            existing=self.existing_combo.currentData(),
            model_path=self.model_path,
        )
        if self._quality_supported:
            kwargs["quality"] = self.quality_spin.value()
        return BatchOptions(**kwargs)

    def start(self) -> None:
        if self.running:
            return
        in_dir, out_dir = Path(self.input_edit.text().strip()), Path(self.output_edit.text().strip())
        if not self.input_edit.text().strip() or not self.output_edit.text().strip():
            self.summary.setText("Choose the folder of photos and the folder for the results.")
            return
        s = self.settings
        s.set_folder("batch_in", in_dir)
        s.set_folder("batch_out", out_dir)
        s.set_batch_option("k", str(self.k_combo.currentData()))
        s.set_batch_option("recursive", self.recursive.isChecked())
        s.set_batch_option("format", self.format_combo.currentData())
        s.set_batch_option("quality", self.quality_spin.value())
        s.set_batch_option("existing", self.existing_combo.currentData())
        try:
            options = self.options()
        except Exception as exc:
            self.summary.setText(describe_error(exc))
            return
        self.result = None
        self.rows = {}
        self.table.setRowCount(0)
        self.summary.setText("")
        self.progress_bar.setRange(0, 0)
        self.eta_label.setText("Looking for photos…")
        self._t_start = time.monotonic()
        self._done_at_start = None
        self.worker = BatchWorker(in_dir, out_dir, options, self)
        self.worker.planned.connect(self._on_planned)
        self.worker.progress.connect(self._on_progress)
        self.worker.finishedBatch.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.finished.connect(self._on_thread_end)
        self._set_running(True)
        log.info("batch: %s → %s (k=%s)", in_dir, out_dir, self.k_combo.currentData())
        self.worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel_event.set()
            self.eta_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def stop(self, timeout_ms: int = 30000) -> bool:
        """Cancel and wait for the worker thread (the window is closing)."""
        if self.worker is None:
            return True
        self.worker.cancel_event.set()
        return self.worker.wait(timeout_ms)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.input_edit, self.output_edit, self.k_combo, self.recursive, self.upscale_combo,
                  self.format_combo, self.existing_combo):
            w.setEnabled(not running)
        self.quality_spin.setEnabled(not running and self._quality_supported)

    def _set_row(self, rel: str, status: str, faces: str = "", details: str = "") -> None:
        row = self.rows.get(rel)
        if row is None:
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.rows[rel] = row
            self.table.setItem(row, 0, QTableWidgetItem(rel))
        item = QTableWidgetItem(STATUS_TEXT.get(status, status))
        item.setData(Qt.ItemDataRole.UserRole, status)
        if status == "failed":
            item.setForeground(Qt.GlobalColor.red)
        self.table.setItem(row, 1, item)
        self.table.setItem(row, 2, QTableWidgetItem(faces))
        detail = QTableWidgetItem(details)
        detail.setToolTip(details)
        self.table.setItem(row, 3, detail)

    def status_of(self, rel: str) -> str | None:
        row = self.rows.get(rel)
        if row is None or self.table.item(row, 1) is None:
            return None
        return self.table.item(row, 1).data(Qt.ItemDataRole.UserRole)

    def _on_planned(self, rels: list) -> None:
        for rel in rels:
            self._set_row(rel, "waiting")
        self.progress_bar.setRange(0, max(1, len(rels)))
        self.eta_label.setText(f"{len(rels)} photo{'s' if len(rels) != 1 else ''} to do")

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        if self._done_at_start is None:
            self._done_at_start = done  # files already done by an earlier run do not count for the ETA
            self._t_start = time.monotonic()
        rel, _, what = message.rpartition(": ")
        if rel in self.rows:
            status = {"FAILED": "failed", "cancelled": "cancelled", "skipped": "skipped"}.get(what, "done")
            self._set_row(rel, status, details=what if status == "done" else "")
        worked = done - self._done_at_start
        elapsed = time.monotonic() - self._t_start
        if 0 < worked and done < total:
            eta = elapsed / worked * (total - done)
            self.eta_label.setText(f"{done} of {total} — about {self._duration(eta)} left")
        elif done < total:
            self.eta_label.setText(f"{done} of {total}")

    @staticmethod
    def _duration(seconds: float) -> str:
        seconds = int(round(seconds))
        if seconds < 60:
            return f"{seconds} s"
        m, s = divmod(seconds, 60)
        if m < 60:
            return f"{m} min {s:02d} s"
        h, m = divmod(m, 60)
        return f"{h} h {m:02d} min"

    def _on_finished(self, result) -> None:
        self.result = result
        for rec in result.records:
            faces = f"{rec.restored}/{rec.faces}" if rec.status == "done" else ""
            details = rec.error or "; ".join(rec.warnings)
            if rec.status == "done" and not details:
                details = f"{rec.seconds:.1f} s → {rec.output}"
            self._set_row(rec.input, rec.status, faces, details)
        self.progress_bar.setRange(0, max(1, len(result.records)))
        self.progress_bar.setValue(len(result.records))
        failures = [r for r in result.records if r.status == "failed"]
        text = result.summary()
        if failures:
            text += "<br><b>Failed:</b><br>" + "<br>".join(
                f"• {_html(r.input)}: {_html(r.error)}" for r in failures
            )
        if result.was_cancelled:
            text = "<b>Cancelled.</b> " + text + "<br>Start again with “Skip them” to resume."
        self.summary.setText(text)
        self.eta_label.setText("Cancelled" if result.was_cancelled else f"Finished in {self._duration(result.seconds)}")
        log.info("batch: %s", result.summary())
        for r in failures:
            log.warning("batch: %s failed: %s", r.input, r.error)

    def _on_failed(self, text: str) -> None:
        self.summary.setText(f"<b>The batch could not run:</b> {_html(text)}")
        self.eta_label.setText("")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        log.error("batch: %s", text)

    def _on_thread_end(self) -> None:
        self._set_running(False)

    def closeEvent(self, event) -> None:
        # closing the dialog does not stop a running batch (it is non-modal); the main window's
        # shutdown does. Hide only.
        event.accept()


def _html(text: str) -> str:
    import html

    return html.escape(str(text))
