"""The live per-cycle strip for the selected face: input, cycle 1, cycle 2, … filled in as each
cycle finishes. Each thumbnail is a child QLabel holding a pixmap (objectName ``cycleThumbJ``,
J = 0 for the input); under it, the mean absolute change from the previous image (0…255 scale),
and a small plot of those changes on the right. Clicking a thumbnail emits ``cycleClicked(J)``."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.gui.imaging import thumbnail

THUMB = 96
MAX_CYCLES = 6


class _Thumb(QLabel):
    clicked = Signal(int)

    def __init__(self, cycle: int, parent: QWidget) -> None:
        super().__init__(parent)
        self.cycle = cycle
        self.setObjectName(f"cycleThumb{cycle}")
        self.setProperty("cycle", cycle)
        self.setFixedSize(THUMB + 6, THUMB + 6)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFrameShape(QFrame.Shape.Box)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Input crop" if cycle == 0 else f"Cycle {cycle}: click to show it in the compare view")

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.cycle)


class DeltaPlot(QWidget):
    """Mean |cycle_j − cycle_(j−1)| against j: how quickly the face settles on its fixed point."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cycleDeltaPlot")
        self.deltas: list[float] = []
        self.setFixedSize(160, THUMB + 26)
        self.setToolTip("Change between successive cycles (mean absolute difference, 0–255)")

    def set_deltas(self, deltas: list[float]) -> None:
        self.deltas = list(deltas)
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(34, 24, -6, -18)
        p.setPen(self.palette().color(self.foregroundRole()))
        p.drawText(QRectF(0, 0, self.width(), 14), Qt.AlignmentFlag.AlignCenter, "change per cycle")
        p.setPen(QPen(QColor(140, 140, 140), 1))
        p.drawLine(r.bottomLeft(), r.bottomRight())
        p.drawLine(r.bottomLeft(), r.topLeft())
        if not self.deltas:
            p.end()
            return
        top = max(self.deltas) or 1.0
        n = MAX_CYCLES
        pts = [
            QPointF(r.left() + r.width() * (j / max(1, n - 1)), r.bottom() - r.height() * (d / top))
            for j, d in enumerate(self.deltas)
        ]
        p.setPen(QPen(QColor(60, 150, 230), 2))
        for a, b in zip(pts, pts[1:]):
            p.drawLine(a, b)
        p.setBrush(QColor(60, 150, 230))
        for q in pts:
            p.drawEllipse(q, 2.5, 2.5)
        p.setPen(self.palette().color(self.foregroundRole()))
        p.drawText(QRectF(0, r.top() - 7, 31, 14), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{top:.1f}")
        p.drawText(QRectF(0, r.bottom() - 7, 31, 14), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, "0")
        p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt.AlignmentFlag.AlignCenter, "cycle →")
        p.end()


class CyclePreview(QWidget):
    cycleClicked = Signal(int)  # 0 = input

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cyclePreview")
        self.setAccessibleName("Per-cycle preview of the selected face")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.title = QLabel("Per-cycle preview: open a photo with a face", self)
        self.title.setObjectName("cyclePreviewTitle")
        self._thumbs: list[_Thumb] = []
        self._captions: list[QLabel] = []
        self._cells: list[QWidget] = []
        self._deltas: list[float | None] = [None] * (MAX_CYCLES + 1)
        self._visible_k = 0
        self.selected = -1
        row = QHBoxLayout()
        row.setSpacing(6)
        for j in range(MAX_CYCLES + 1):
            cell = QWidget(self)
            v = QVBoxLayout(cell)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(2)
            thumb = _Thumb(j, cell)
            thumb.clicked.connect(self._on_click)
            cap = QLabel("input" if j == 0 else f"cycle {j}", cell)
            cap.setObjectName(f"cycleCaption{j}")
            cap.setAlignment(Qt.AlignmentFlag.AlignCenter)
            v.addWidget(thumb)
            v.addWidget(cap)
            row.addWidget(cell)
            cell.setVisible(False)
            self._thumbs.append(thumb)
            self._captions.append(cap)
            self._cells.append(cell)
        self.plot = DeltaPlot(self)
        row.addSpacing(12)
        row.addWidget(self.plot)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.title)
        layout.addLayout(row)

    # --------------------------------------------------------------------------- content
    def reset(self, input_crop: np.ndarray | None, face_index: int = -1) -> None:
        """A new face (or none): only the input thumbnail remains."""
        self._deltas = [None] * (MAX_CYCLES + 1)
        for j, thumb in enumerate(self._thumbs):
            thumb.clear()
            thumb.setPixmap(QPixmap())
            self._cells[j].setVisible(False)
            self._captions[j].setText("input" if j == 0 else f"cycle {j}")
        self._visible_k = 0
        self.selected = -1
        self.plot.set_deltas([])
        if input_crop is not None:
            self._thumbs[0].setPixmap(QPixmap.fromImage(thumbnail(input_crop, THUMB)))
            self._cells[0].setVisible(True)
            self.title.setText(f"Per-cycle preview of face {face_index + 1} (click a cycle to see it)")
        else:
            self.title.setText("Per-cycle preview: no face selected")
        self._mark_selected()

    def set_cycle(self, cycle: int, image: np.ndarray, delta: float, seconds: float | None = None) -> None:
        """Cycle ``cycle`` (1…) of the selected face has finished."""
        if not 1 <= cycle <= MAX_CYCLES:
            return
        self._thumbs[cycle].setPixmap(QPixmap.fromImage(thumbnail(image, THUMB)))
        self._deltas[cycle] = delta
        timing = f", {seconds * 1e3:.0f} ms" if seconds is not None else ""
        self._captions[cycle].setText(f"cycle {cycle}\nΔ {delta * 255:.2f}{timing}")
        self._captions[cycle].setToolTip(
            f"Mean absolute change from {'the input' if cycle == 1 else f'cycle {cycle - 1}'}: "
            f"{delta * 255:.3f} of 255"
        )
        if cycle <= max(self._visible_k, cycle):
            self._cells[cycle].setVisible(True)
        self._visible_k = max(self._visible_k, cycle)
        self._update_plot()

    def show_up_to(self, k: int) -> None:
        """Show cycles 1…k only (lowering k hides, never forgets, the cycles beyond it)."""
        self._visible_k = k
        for j in range(1, MAX_CYCLES + 1):
            self._cells[j].setVisible(j <= k and self._deltas[j] is not None)
        self._update_plot()

    def _update_plot(self) -> None:
        shown = [d for j, d in enumerate(self._deltas) if j >= 1 and d is not None and j <= self._visible_k]
        self.plot.set_deltas([x * 255 for x in shown])

    def thumbnails(self) -> list[QLabel]:
        """The visible cycle thumbnails (not the input), in cycle order."""
        return [t for t in self._thumbs[1:] if self._cells[t.cycle].isVisible() and not t.pixmap().isNull()]

    def deltas(self) -> list[float]:
        return [d for d in self._deltas[1:] if d is not None]

    def set_selected(self, cycle: int) -> None:
        self.selected = cycle
        self._mark_selected()

    def _mark_selected(self) -> None:
        for thumb in self._thumbs:
            thumb.setLineWidth(3 if thumb.cycle == self.selected else 1)
            thumb.setStyleSheet("QLabel { border: 3px solid #3c96e6; }" if thumb.cycle == self.selected else "")

    def _on_click(self, cycle: int) -> None:
        self.set_selected(cycle)
        self.cycleClicked.emit(cycle)
