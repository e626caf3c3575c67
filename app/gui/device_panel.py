"""The device panel: what the restoration would cost on an embedded NPU (SIMULATED with
app.core.npu: a per-layer roofline on the HiSilicon Hi3402 profile), next to the time measured on
this computer for the same work. INT8 and FP32 side by side; a per-layer table on demand; the
simulator's assumptions always shown."""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger("cfr.gui.device")

NPU = "hi3402"
PRECISIONS = ("int8", "fp32")


def npu_available() -> bool:
    try:
        from app.core.npu import simulate  # noqa: F401
    except Exception:
        return False
    return True


def simulate_model(path: Path):
    """The Simulation of one cycle of ``path`` on the Hi3402 profile (run in a worker)."""
    from app.core.npu import simulate

    return simulate(path, npu=NPU, input_shape=(1, 3, 256, 256))


def time_models(paths: dict[str, Path], crop: np.ndarray | None, repeats: int = 3) -> dict[str, float]:
    """precision → median seconds for one cycle on this CPU (run in a worker)."""
    from app.core.restorer import Restorer

    x = crop if crop is not None else np.full((256, 256, 3), 0.5, np.float32)
    out = {}
    for precision, path in paths.items():
        r = Restorer(path)
        next(iter(r.restore(x, 1)))  # warm-up: the first run allocates
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            next(iter(r.restore(x, 1)))
            times.append(time.perf_counter() - t0)
        out[precision] = statistics.median(times)
    return out


def _ms(seconds_or_ms: float | None, already_ms: bool = False) -> str:
    if seconds_or_ms is None:
        return "—"
    ms = seconds_or_ms if already_ms else seconds_or_ms * 1e3
    return f"{ms:,.1f} ms" if ms < 10_000 else f"{ms / 1e3:,.1f} s"


LAYER_COLUMNS = ("name", "op_type", "macs", "ms", "compute_ms", "memory_ms", "bound", "dram_bytes", "utilisation", "fused")


class DevicePanel(QWidget):
    """Columns: the Hi3402 simulation (the NPU runs INT8: the simulator times an FP32 graph as if
    quantised, so one NPU column), then the CPU measured with the INT8 and the FP32 model.
    Rows: one cycle, × k, × the faces being restored."""

    def __init__(self, run_task: Callable | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("devicePanel")
        self.setAccessibleName("Device panel: simulated NPU latency and measured CPU time")
        self.setMinimumWidth(420)
        self._run_task = run_task
        self.model_paths: dict[str, Path] = {}
        self.simulation = None
        self.simulation_error: str | None = None
        self.simulated_path: Path | None = None
        self.cpu_cycle_seconds: list[float] = []  # measured by the engine worker, current model
        self.cpu_by_precision: dict[str, float] = {}  # the "Time INT8 and FP32" button
        self.current_precision = "int8"
        self.k = 2
        self.faces = 0
        self._crop: np.ndarray | None = None

        self.banner = QLabel(self)
        self.banner.setObjectName("simulatedBanner")
        self.banner.setWordWrap(True)
        self.banner.setText(
            "<b>SIMULATED</b> — HiSilicon Hi3402 NPU latency estimated by a per-layer roofline model "
            "(not measured on a device). The CPU columns are measured on this computer."
        )
        self.banner.setStyleSheet("QLabel { background: #fff3cd; color: #5c4400; padding: 4px; border-radius: 3px; }")

        self.table = QTableWidget(3, 3, self)
        self.table.setObjectName("deviceTable")
        self.table.setHorizontalHeaderLabels(["Hi3402 NPU\n(simulated)", "this CPU, INT8\n(measured)", "this CPU, FP32\n(measured)"])
        self.table.setVerticalHeaderLabels(["per cycle", "× k", "× faces"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 3 * 26 + 4)

        self.cpu_note = QLabel(self)
        self.cpu_note.setObjectName("cpuNote")
        self.cpu_note.setWordWrap(True)
        self.assumptions = QLabel(self)
        self.assumptions.setObjectName("npuAssumptions")
        self.assumptions.setWordWrap(True)
        self.assumptions.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.assumptions.setVisible(False)

        self.measure_button = QPushButton("Time INT8 vs FP32", self)
        self.measure_button.setObjectName("measureButton")
        self.measure_button.setToolTip("Time one cycle of the INT8 and the FP32 model on this CPU")
        self.measure_button.clicked.connect(self.measure_cpu)
        self.layers_button = QPushButton("Per-layer", self)
        self.layers_button.setObjectName("layersButton")
        self.layers_button.setToolTip("The simulated time of every layer")
        self.layers_button.setCheckable(True)
        self.layers_button.toggled.connect(self._toggle_layers)
        self.assumptions_button = QPushButton("Assumptions", self)
        self.assumptions_button.setObjectName("assumptionsButton")
        self.assumptions_button.setCheckable(True)
        self.assumptions_button.setChecked(True)
        self.assumptions_button.toggled.connect(self.assumptions.setVisible)
        self.assumptions.setVisible(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.layers_button)
        buttons.addWidget(self.assumptions_button)
        buttons.addStretch(1)

        self.layer_table = QTableWidget(0, 0, self)
        self.layer_table.setObjectName("layerTable")
        self.layer_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.layer_table.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.banner)
        layout.addWidget(self.table)
        layout.addWidget(self.cpu_note)
        layout.addLayout(buttons)
        layout.addWidget(self.layer_table, 1)
        layout.addWidget(self.assumptions)
        layout.addStretch(0)
        self.refresh()

    # -------------------------------------------------------------------------- inputs
    def set_models(self, paths: dict[str, Path], current_precision: str) -> None:
        """The model files (precision → path; the ones that exist) and the one in use."""
        self.model_paths = {p: Path(v) for p, v in paths.items() if v is not None and Path(v).is_file()}
        self.current_precision = current_precision
        self.simulation, self.simulation_error = None, None
        self.cpu_cycle_seconds = []
        self.cpu_by_precision = {}
        # the NPU runs the network in INT8, which the simulator assumes for any graph; the FP32 file
        # is the plain network, while the INT8 file carries layout rewrites for this CPU's kernels
        # (transposes an NPU compiler would not emit), so the FP32 file is simulated where there is one
        self.simulated_path = (self.model_paths.get("fp32") or self.model_paths.get("int8")
                               or self.model_paths.get(current_precision))
        self._generation = getattr(self, "_generation", 0) + 1
        if self.simulated_path is not None and npu_available() and self._run_task is not None:
            gen = self._generation  # a result for a model replaced meanwhile is dropped
            self._run_task(simulate_model, self.simulated_path,
                           on_done=lambda sim: self._on_simulated(sim) if gen == self._generation else None,
                           on_failed=lambda text: self._on_sim_failed(text) if gen == self._generation else None)
        self.refresh()

    def set_workload(self, k: int, faces: int) -> None:
        self.k, self.faces = max(1, int(k)), int(faces)
        self.refresh()

    def set_crop(self, crop: np.ndarray | None) -> None:
        self._crop = crop

    def add_cpu_cycle(self, seconds: float) -> None:
        self.cpu_cycle_seconds.append(float(seconds))
        del self.cpu_cycle_seconds[:-50]
        self.refresh()

    def measure_cpu(self) -> None:
        if not self.model_paths or self._run_task is None:
            return
        self.measure_button.setEnabled(False)
        self.measure_button.setText("Timing…")

        def done(result):
            self.cpu_by_precision = dict(result)
            self.measure_button.setEnabled(True)
            self.measure_button.setText("Time INT8 vs FP32")
            self.refresh()

        def failed(text):
            self.measure_button.setEnabled(True)
            self.measure_button.setText("Time INT8 vs FP32")
            self.cpu_note.setText(f"Timing failed: {text}")

        self._run_task(time_models, dict(self.model_paths), self._crop, on_done=done, on_failed=failed)

    def _on_simulated(self, sim) -> None:
        self.simulation, self.simulation_error = sim, None
        self.refresh()
        if self.layers_button.isChecked():
            self._fill_layers()

    def _on_sim_failed(self, text: str) -> None:
        self.simulation, self.simulation_error = None, text
        log.warning("NPU simulation failed: %s", text)
        self.refresh()

    # ---------------------------------------------------------------------------- view
    def cpu_ms(self, precision: str) -> float | None:
        """Median CPU milliseconds per cycle: live restores for the model in use, else the timing button."""
        if precision == self.current_precision and self.cpu_cycle_seconds:
            return statistics.median(self.cpu_cycle_seconds) * 1e3
        if precision in self.cpu_by_precision:
            return self.cpu_by_precision[precision] * 1e3
        return None

    def cpu_cycle_ms(self) -> float | None:
        return self.cpu_ms(self.current_precision)

    def npu_ms(self) -> float | None:
        return None if self.simulation is None else float(self.simulation.per_inference_ms)

    def refresh(self) -> None:
        k, faces = self.k, max(self.faces, 0)
        columns = [self.npu_ms(), self.cpu_ms("int8"), self.cpu_ms("fp32")]
        for col, per_cycle in enumerate(columns):
            values = [per_cycle, None if per_cycle is None else per_cycle * k, None if per_cycle is None else per_cycle * k * faces]
            for row, v in enumerate(values):
                text = _ms(v, already_ms=True) if v is not None else self._missing_reason(col)
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if col == self._current_column():
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, col, item)
        self.table.setVerticalHeaderLabels(["per cycle", f"× k = {k}", f"× {faces} face{'s' if faces != 1 else ''}"])
        notes = []
        if self.cpu_cycle_seconds:
            notes.append(
                f"CPU: median of the last {len(self.cpu_cycle_seconds)} cycle(s) run while restoring "
                f"({self.current_precision.upper()} model, bold)."
            )
        if "int8" in self.cpu_by_precision and "fp32" in self.cpu_by_precision:
            notes.append(f"INT8 is {self.cpu_by_precision['fp32'] / self.cpu_by_precision['int8']:.2f}× as fast as FP32 here.")
        self.cpu_note.setText(" ".join(notes) or "CPU times appear once a face has been restored.")
        self.assumptions.setText(self._assumptions_text())

    def _current_column(self) -> int:
        return {"int8": 1, "fp32": 2}.get(self.current_precision, 1)

    def _missing_reason(self, col: int) -> str:
        if col == 0:
            if not npu_available():
                return "simulator not installed"
            if self.simulated_path is None:
                return "no model"
            return "failed" if self.simulation_error else "simulating…"
        precision = "int8" if col == 1 else "fp32"
        if precision not in self.model_paths:
            return "no model"
        return "not run yet" if precision == self.current_precision else "press Time…"

    def _assumptions_text(self) -> str:
        if not npu_available():
            return "The NPU simulator (app.core.npu) is not part of this build; only CPU times are shown."
        if self.simulation_error:
            return f"The simulation failed: {self.simulation_error}"
        sim = self.simulation
        if sim is None:
            return "Assumptions appear once the simulation has run."
        name = getattr(sim.profile, "display_name", NPU)
        lines = [f"<b>Simulation assumptions</b> — {name}, model {self.simulated_path.name}:"]
        lines += [f"• {a}" for a in sim.assumptions]
        extra = f"{sim.macs / 1e9:.2f} GMAC and {sim.params / 1e6:.2f} M parameters per cycle"
        if getattr(sim, "tiles", 1) and sim.tiles > 1:
            extra += f", {sim.tiles:.2f} tiles"
        lines.append(f"• {extra}.")
        return "<br>".join(lines)

    def _toggle_layers(self, on: bool) -> None:
        self.layer_table.setVisible(on)
        if on:
            self._fill_layers()

    def _fill_layers(self) -> None:
        sim = self.simulation
        if sim is None or not sim.layers:
            self.layer_table.setRowCount(0)
            return
        layers = list(sim.layers)
        first = layers[0]
        fields = [f.name for f in dataclasses.fields(first)] if dataclasses.is_dataclass(first) else list(vars(first))
        names = [n for n in LAYER_COLUMNS if n in fields] or fields
        self.layer_table.setColumnCount(len(names))
        self.layer_table.setHorizontalHeaderLabels(names)
        self.layer_table.setRowCount(len(layers))
        for r, layer in enumerate(layers):
            for c, n in enumerate(names):
                v = getattr(layer, n)
                if isinstance(v, float):
                    text = f"{v:.3f}" if n.endswith("ms") or n == "utilisation" else f"{v:,.4g}"
                elif isinstance(v, int):
                    text = f"{v:,}"
                elif isinstance(v, (list, tuple)):
                    text = ", ".join(map(str, v))
                else:
                    text = str(v)
                self.layer_table.setItem(r, c, QTableWidgetItem(text))
        self.layer_table.resizeColumnsToContents()
