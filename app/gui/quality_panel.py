"""The quality knob: k = 1…6 cycles or "auto" (stop at the fixed point), blend with the original,
and which faces are restored (a checkable list, one row per detected face)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

K_MIN, K_MAX = 1, 6


def k_descriptions(k_psnr: int = 2, k_lpips: int = 3) -> dict[int, str]:
    """What each k is for. The recommended values come from the model's metadata (CFRNet paper:
    PSNR/SSIM best at k = 2, LPIPS best at k = 3; the shipped models since step 20,935 measure best on
    both at k = 6)."""
    text = {}
    for k in range(K_MIN, K_MAX + 1):
        if k == k_psnr == k_lpips:
            text[k] = (f"k = {k}: best measured quality — closest to the photo and most natural detail "
                       f"(highest PSNR, lowest LPIPS). {k}× the time of one cycle.")
        elif k == k_psnr:
            text[k] = f"k = {k}: best fidelity — closest to the photo (highest PSNR/SSIM)."
        elif k == k_lpips:
            text[k] = f"k = {k}: best perceptual quality — most natural detail (lowest LPIPS)."
        elif k == 1:
            text[k] = "k = 1: one pass — fastest, the lightest touch."
        elif k < min(k_psnr, k_lpips):
            text[k] = (f"k = {k}: {k} cycles — each brings the face closer to its fixed point; "
                       f"the measured best is k = {min(k_psnr, k_lpips)}.")
        else:
            text[k] = (
                f"k = {k}: beyond the recommended settings. A face at its fixed point changes little "
                f"more — the change per cycle under the photo shows it. {k}× the time of one cycle."
            )
    return text


class TickLabels(QWidget):
    """The value and a word under each tick of a slider, placed where the style puts the ticks."""

    def __init__(self, slider: QSlider, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = slider
        self.labels: dict[int, str] = {}
        fm = self.fontMetrics()
        self.setMinimumHeight(2 * fm.height() + 4)

    def set_labels(self, labels: dict[int, str]) -> None:
        self.labels = dict(labels)
        self.update()

    def paintEvent(self, event) -> None:
        from PySide6.QtGui import QPainter
        from PySide6.QtWidgets import QStyle, QStyleOptionSlider

        opt = QStyleOptionSlider()
        self.slider.initStyleOption(opt)
        style = self.slider.style()
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, self.slider)
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderGroove, self.slider)
        span = groove.width() - handle.width()
        offset = self.slider.mapTo(self.parentWidget(), groove.topLeft()).x() - self.x() + handle.width() / 2
        p = QPainter(self)
        fm = self.fontMetrics()
        for k in range(self.slider.minimum(), self.slider.maximum() + 1):
            x = offset + QStyle.sliderPositionFromValue(self.slider.minimum(), self.slider.maximum(), k, span)
            bold = k == self.slider.value() and self.slider.isEnabled()
            font = self.font()
            font.setBold(bold)
            p.setFont(font)
            for line, text in enumerate((str(k), self.labels.get(k, ""))):
                w = fm.horizontalAdvance(text) + 8
                left = min(max(0.0, x - w / 2), self.width() - w)  # the end labels stay inside
                p.drawText(int(left), line * fm.height(), int(w), fm.height(), int(Qt.AlignmentFlag.AlignHCenter), text)
        p.end()




class QualityPanel(QWidget):
    kChanged = Signal(object)  # int 1…6 or "auto"
    blendChanged = Signal(float)
    faceToggled = Signal(int, bool)
    currentFaceChanged = Signal(int)
    upscaleChanged = Signal(object)  # None, 2 or 4
    upscaleModelChanged = Signal(str)  # "sesr" or "falsr"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("qualityPanel")
        self._k_psnr, self._k_lpips = 2, 3
        self._updating = False

        # --- k ---------------------------------------------------------------------------
        box = QGroupBox("Quality: restoration cycles (k)", self)
        self.slider = QSlider(Qt.Orientation.Horizontal, box)
        self.slider.setObjectName("qualitySlider")
        self.slider.setAccessibleName("Restoration cycles k")
        self.slider.setRange(K_MIN, K_MAX)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setValue(2)
        self.ticks = TickLabels(self.slider, box)
        self.auto = QCheckBox("Auto: stop at the fixed point (≤ 6 cycles)", box)
        self.auto.setObjectName("autoCheck")
        self.description = QLabel(box)
        self.description.setObjectName("kDescription")
        self.description.setWordWrap(True)
        self.description.setMinimumHeight(36)
        v = QVBoxLayout(box)
        v.addWidget(self.slider)
        v.addWidget(self.ticks)
        v.addWidget(self.description)
        v.addWidget(self.auto)

        # --- blend -----------------------------------------------------------------------
        blend_box = QGroupBox("Blend with the original", self)
        self.blend = QSlider(Qt.Orientation.Horizontal, blend_box)
        self.blend.setObjectName("blendSlider")
        self.blend.setAccessibleName("Blend with the original")
        self.blend.setRange(0, 100)
        self.blend.setValue(100)
        self.blend_label = QLabel(blend_box)
        self.blend_label.setMinimumWidth(110)
        h = QHBoxLayout(blend_box)
        h.addWidget(self.blend, 1)
        h.addWidget(self.blend_label)

        # --- upscale ---------------------------------------------------------------------
        up_box = QGroupBox("Upscale the whole photo", self)
        self.upscale_combo = QComboBox(up_box)
        self.upscale_combo.setObjectName("upscaleCombo")
        self.upscale_combo.setAccessibleName("Upscale the photo")
        self.upscale_combo.addItem("No: keep the size", None)
        self.upscale_combo.addItem("×2 — faces restored at the new size", 2)
        self.upscale_combo.addItem("×4 — faces restored at the new size", 4)
        # which network enlarges: SESR is fast (×2, ×4); FALSR-C is better and ~10× slower (×2 only)
        self.upscale_model_combo = QComboBox(up_box)
        self.upscale_model_combo.setObjectName("upscaleModelCombo")
        self.upscale_model_combo.setAccessibleName("Upscaling network")
        self.upscale_model_combo.addItem("Fast (SESR)", "sesr")
        self.upscale_model_combo.addItem("Best quality (FALSR-C, ×2 only)", "falsr")
        self._scale_reasons: dict[int, str | None] = {}
        uh = QHBoxLayout(up_box)
        uh.addWidget(self.upscale_combo, 1)
        uh.addWidget(self.upscale_model_combo, 1)

        # --- faces -----------------------------------------------------------------------
        faces_box = QGroupBox("Faces (tick to restore; click a box in the photo too)", self)
        self.face_list = QListWidget(faces_box)
        self.face_list.setObjectName("faceList")
        self.face_list.setAccessibleName("Detected faces")
        self.face_list.setMinimumHeight(70)
        self.face_list.setMaximumHeight(150)
        all_btn = QPushButton("All", faces_box)
        none_btn = QPushButton("None", faces_box)
        largest_btn = QPushButton("Largest", faces_box)
        all_btn.setObjectName("facesAllButton")
        none_btn.setObjectName("facesNoneButton")
        largest_btn.setObjectName("facesLargestButton")
        all_btn.clicked.connect(lambda: self.set_included(range(self.face_list.count())))
        none_btn.clicked.connect(lambda: self.set_included([]))
        largest_btn.clicked.connect(lambda: self.set_included([0] if self.face_list.count() else []))
        buttons = QHBoxLayout()
        for b in (all_btn, none_btn, largest_btn):
            buttons.addWidget(b)
        fv = QVBoxLayout(faces_box)
        fv.addWidget(self.face_list, 1)
        fv.addLayout(buttons)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(box)
        layout.addWidget(blend_box)
        layout.addWidget(up_box)
        layout.addWidget(faces_box)
        layout.addStretch(1)

        self.slider.valueChanged.connect(self._on_slider)
        self.auto.toggled.connect(self._on_auto)
        self.blend.valueChanged.connect(self._on_blend)
        self.upscale_combo.currentIndexChanged.connect(self._on_upscale)
        self.upscale_model_combo.currentIndexChanged.connect(self._on_upscale_model)
        self.face_list.itemChanged.connect(self._on_item_changed)
        self.face_list.currentRowChanged.connect(self._on_current_row)
        self._refresh_labels()
        self._on_blend(self.blend.value(), emit=False)

    # ------------------------------------------------------------------------------ k
    def set_recommended(self, k_psnr: int, k_lpips: int) -> None:
        self._k_psnr, self._k_lpips = k_psnr, k_lpips
        self._refresh_labels()

    def _refresh_labels(self) -> None:
        labels = {}
        for k in range(K_MIN, K_MAX + 1):
            word = ""
            if k == self._k_psnr == self._k_lpips:
                word = "best"  # the model's metadata: this k scores best on both
            elif k == self._k_psnr:
                word = "fidelity"
            elif k == self._k_lpips:
                word = "perceptual"
            elif k == 1:
                word = "fast"
            labels[k] = word
        self.ticks.set_labels(labels)
        self.slider.setToolTip("\n".join(k_descriptions(self._k_psnr, self._k_lpips).values()))
        self._describe()

    def _describe(self) -> None:
        if self.auto.isChecked():
            self.description.setText(
                "Auto: cycles run until the face stops changing (the fixed point CFRNet is trained "
                "towards), at most 6."
            )
        else:
            self.description.setText(k_descriptions(self._k_psnr, self._k_lpips)[self.slider.value()])

    @property
    def k(self) -> int | str:
        return "auto" if self.auto.isChecked() else int(self.slider.value())

    def set_k(self, k: int | str, emit: bool = True) -> None:
        self._updating = not emit
        try:
            if k == "auto":
                self.auto.setChecked(True)
            else:
                self.auto.setChecked(False)
                self.slider.setValue(int(k))
        finally:
            self._updating = False
        self._describe()

    def _on_slider(self, value: int) -> None:
        self._describe()
        self.ticks.update()
        if not self._updating and not self.auto.isChecked():
            self.kChanged.emit(int(value))

    def _on_auto(self, on: bool) -> None:
        self.slider.setEnabled(not on)
        self._describe()
        if not self._updating:
            self.kChanged.emit(self.k)

    # -------------------------------------------------------------------------- blend
    @property
    def blend_value(self) -> float:
        return self.blend.value() / 100.0

    def set_blend(self, value: float, emit: bool = True) -> None:
        self._updating = not emit
        try:
            self.blend.setValue(round(value * 100))
        finally:
            self._updating = False
        self._on_blend(self.blend.value(), emit=False)

    def _on_blend(self, value: int, emit: bool = True) -> None:
        self.blend_label.setText(f"{value} % restored")
        if emit and not self._updating:
            self.blendChanged.emit(value / 100.0)

    # ------------------------------------------------------------------------ upscale
    @property
    def upscale(self) -> int | None:
        return self.upscale_combo.currentData()

    def set_upscale(self, scale: int | None, emit: bool = True) -> None:
        self._select(self.upscale_combo, scale, emit)

    def _select(self, combo: QComboBox, data, emit: bool) -> None:
        """Choose the item holding ``data`` (the first item where it is missing or disabled);
        ``emit=False`` changes it without telling the window (restoring saved settings)."""
        idx = combo.findData(data)
        item = combo.model().item(idx) if idx >= 0 else None
        if item is None or not item.isEnabled():
            idx = 0
        self._updating = not emit
        try:
            combo.setCurrentIndex(idx)
        finally:
            self._updating = False

    @staticmethod
    def _enable(combo: QComboBox, data, reason: str | None) -> None:
        """Enable the item holding ``data`` where ``reason`` is None, else disable it and say why."""
        item = combo.model().item(combo.findData(data))
        if item is not None:
            item.setEnabled(reason is None)
            item.setToolTip(reason or "")

    def set_upscale_available(self, available: dict[int, str | None], models: dict[str, str | None] | None = None) -> None:
        """scale → None where its model exists, else why not (the item is disabled, with the reason);
        ``models``: the same for the networks ("sesr", "falsr")."""
        self._scale_reasons = dict(available)
        for family, reason in (models or {}).items():
            self._enable(self.upscale_model_combo, family, reason)
        if not self.upscale_model_combo.model().item(self.upscale_model_combo.currentIndex()).isEnabled():
            self.upscale_model_combo.setCurrentIndex(0)
        self._apply_scale_availability()

    def _apply_scale_availability(self) -> None:
        falsr = self.upscale_model == "falsr"
        for scale in (2, 4):
            reason = self._scale_reasons.get(scale)
            if reason is None and falsr and scale == 4:
                reason = "FALSR-C enlarges ×2 only: choose Fast (SESR) for ×4."
            self._enable(self.upscale_combo, scale, reason)
        current = self.upscale_combo.model().item(self.upscale_combo.currentIndex())
        if not current.isEnabled():
            # FALSR asked for while ×4 was chosen: ×2 with FALSR, not "no upscaling"
            two = self.upscale_combo.model().item(self.upscale_combo.findData(2))
            self.upscale_combo.setCurrentIndex(self.upscale_combo.findData(2) if two.isEnabled() else 0)

    @property
    def upscale_model(self) -> str:
        return self.upscale_model_combo.currentData() or "sesr"

    def set_upscale_model(self, family: str, emit: bool = True) -> None:
        self._select(self.upscale_model_combo, family, emit)
        if not emit:
            self._apply_scale_availability()

    def _on_upscale_model(self, index: int) -> None:
        before = self.upscale
        updating = self._updating
        self._updating = True  # a scale forced from ×4 to ×2 is part of this one change
        try:
            self._apply_scale_availability()
        finally:
            self._updating = updating
        if not self._updating:
            if self.upscale != before:
                self.upscaleChanged.emit(self.upscale)
            self.upscaleModelChanged.emit(self.upscale_model_combo.itemData(index))

    def _on_upscale(self, index: int) -> None:
        if not self._updating:
            self.upscaleChanged.emit(self.upscale_combo.itemData(index))

    # -------------------------------------------------------------------------- faces
    def set_faces(self, faces) -> None:
        """One checkable row per detected face (all ticked)."""
        self._updating = True
        try:
            self.face_list.clear()
            for i, face in enumerate(faces):
                x0, y0, x1, y1 = face.box
                item = QListWidgetItem(f"Face {i + 1} — {x1 - x0:.0f} px wide, score {face.score:.2f}")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked)
                item.setData(Qt.ItemDataRole.UserRole, i)
                self.face_list.addItem(item)
            if faces:
                self.face_list.setCurrentRow(0)
        finally:
            self._updating = False

    def included(self) -> list[int]:
        return [
            i
            for i in range(self.face_list.count())
            if self.face_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_included(self, indices, emit: bool = True) -> None:
        wanted = set(indices)
        changed = []
        self._updating = True
        try:
            for i in range(self.face_list.count()):
                state = Qt.CheckState.Checked if i in wanted else Qt.CheckState.Unchecked
                item = self.face_list.item(i)
                if item.checkState() != state:
                    item.setCheckState(state)
                    changed.append(i)
        finally:
            self._updating = False
        if emit and changed:
            self.faceToggled.emit(changed[0], changed[0] in wanted)

    def toggle_face(self, index: int) -> None:
        item = self.face_list.item(index)
        if item is None:
            return
        on = item.checkState() != Qt.CheckState.Checked
        item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)  # emits via itemChanged

    def current_face(self) -> int:
        return self.face_list.currentRow()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if not self._updating:
            idx = int(item.data(Qt.ItemDataRole.UserRole))
            self.faceToggled.emit(idx, item.checkState() == Qt.CheckState.Checked)

    def _on_current_row(self, row: int) -> None:
        if not self._updating and row >= 0:
            self.currentFaceChanged.emit(row)
