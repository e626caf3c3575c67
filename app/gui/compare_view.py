"""Before/after compare view.

One image transform (zoom, pan) is shared by every pane, so zoom and pan stay in sync:
- split mode: the original left of a draggable vertical line, the result right of it;
- side-by-side: two panes, original and result, each with the same transform;
- original / result: one image.
The wheel zooms at the cursor; dragging pans; dragging the split handle moves the split. Holding
the O key shows the original while held. Face boxes are drawn over the photo; clicking inside a box
(a press and release without dragging) emits ``faceClicked(index)``.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.gui.imaging import array_to_qimage

MODES = ("split", "side", "original", "result")
HOLD_KEY = Qt.Key.Key_O
MIN_ZOOM, MAX_ZOOM = 0.02, 32.0
CLICK_SLOP = 4  # px a press may move and still count as a click
HANDLE_GRAB = 8  # px either side of the split line that grab it


class CompareView(QWidget):
    faceClicked = Signal(int)
    zoomChanged = Signal(float)
    modeChanged = Signal(str)
    holdOriginalChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self.setAccessibleName("Compare view: original and restored photo")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self._original: QImage | None = None
        self._result: QImage | None = None
        self._size = (0, 0)  # image w, h
        self.zoom = 1.0
        self.pan = QPointF(0, 0)  # where the image's (0, 0) lands inside a pane
        self.split = 0.5  # fraction of the widget width
        self._mode = "split"
        self.holding_original = False
        self._fit_pending = True
        self.boxes: list[tuple[float, float, float, float]] = []
        self.included: list[bool] = []
        self.current_face = -1
        self._press: QPointF | None = None
        self._press_pan = QPointF()
        self._dragging_split = False
        self._moved = False
        self.result_label = "Restored"
        self.empty_text = "Open a photo (Ctrl+O), drop one here, or paste one (Ctrl+V)"

    # -------------------------------------------------------------------------- content
    @staticmethod
    def _as_image(image) -> QImage | None:
        """QImages are used as they are (the engine worker converts big photos off the GUI
        thread); arrays are converted here."""
        if image is None or isinstance(image, QImage):
            return image
        return array_to_qimage(image)

    def set_images(self, original, result=None) -> None:
        """A new photo (array or QImage): the view fits it."""
        self._original = self._as_image(original)
        self._result = self._as_image(result)
        self._size = (self._original.width(), self._original.height()) if self._original is not None else (0, 0)
        self.boxes, self.included, self.current_face = [], [], -1
        self._fit_pending = True
        self.fit()
        self.update()

    def set_result(self, result) -> None:
        """A new result (array or QImage) for the same photo: zoom and pan stay where they are."""
        self._result = self._as_image(result)
        self.update()

    def has_image(self) -> bool:
        return self._original is not None

    def set_faces(self, boxes, included, current: int = -1) -> None:
        self.boxes = [tuple(map(float, b)) for b in boxes]
        self.included = list(included)
        self.current_face = current
        self.update()

    # ------------------------------------------------------------------------------ mode
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compare mode {mode!r}")
        if mode != self._mode:
            self._mode = mode
            if self._fit_pending:  # not zoomed or panned by hand: fit the new pane size
                self.fit()
            self.modeChanged.emit(mode)
            self.update()

    def _panes(self) -> list[tuple[QRectF, str]]:
        """(pane rectangle, which image) for the current mode."""
        r = QRectF(self.rect())
        if self._mode == "side" and not self.holding_original:
            half = r.width() / 2
            return [(QRectF(0, 0, half - 1, r.height()), "original"), (QRectF(half + 1, 0, half - 1, r.height()), "result")]
        return [(r, "split" if self._mode == "split" else self._mode)]

    def _pane_size(self) -> tuple[float, float]:
        pane = self._panes()[0][0]
        return pane.width(), pane.height()

    # ------------------------------------------------------------------------ zoom, pan
    def fit(self) -> None:
        w, h = self._size
        if not w or not h:
            return
        pw, ph = self._pane_size()
        if pw < 2 or ph < 2:
            return
        self.zoom = max(MIN_ZOOM, min(pw / w, ph / h))
        self.pan = QPointF((pw - w * self.zoom) / 2, (ph - h * self.zoom) / 2)
        self._fit_pending = True  # stays fitted (resize, mode change) until zoomed or panned by hand
        self.zoomChanged.emit(self.zoom)
        self.update()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under ``anchor`` (pane coordinates) where it is."""
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if anchor is None:
            pw, ph = self._pane_size()
            anchor = QPointF(pw / 2, ph / 2)
        img = (anchor - self.pan) / self.zoom
        self.zoom = zoom
        self.pan = anchor - img * zoom
        self._fit_pending = False
        self.zoomChanged.emit(self.zoom)
        self.update()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * 1.25)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / 1.25)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def _pane_at(self, pos: QPointF) -> QRectF:
        for rect, _ in self._panes():
            if rect.contains(pos):
                return rect
        return self._panes()[0][0]

    def image_point(self, pos: QPointF) -> QPointF:
        """Widget position → image pixel coordinates."""
        pane = self._pane_at(pos)
        return (pos - pane.topLeft() - self.pan) / self.zoom

    def widget_point(self, x: float, y: float, pane_index: int = 0) -> QPointF:
        pane = self._panes()[min(pane_index, len(self._panes()) - 1)][0]
        return pane.topLeft() + self.pan + QPointF(x, y) * self.zoom

    def face_at(self, pos: QPointF) -> int:
        p = self.image_point(pos)
        hits = [i for i, (x0, y0, x1, y1) in enumerate(self.boxes) if x0 <= p.x() <= x1 and y0 <= p.y() <= y1]
        if not hits:
            return -1
        # nested boxes: the smallest one is the face the user meant
        return min(hits, key=lambda i: (self.boxes[i][2] - self.boxes[i][0]) * (self.boxes[i][3] - self.boxes[i][1]))

    def _split_x(self) -> float:
        return self.split * self.width()

    # ---------------------------------------------------------------------------- events
    def resizeEvent(self, event) -> None:
        if self._fit_pending:
            self.fit()
        super().resizeEvent(event)

    def wheelEvent(self, event) -> None:
        if self._original is None:
            return
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        pos = event.position()
        pane = self._pane_at(pos)
        self.set_zoom(self.zoom * (1.25**steps), pos - pane.topLeft())
        event.accept()

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._original is None:
            return super().mousePressEvent(event)
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position()
        self._press, self._press_pan, self._moved = pos, QPointF(self.pan), False
        self._dragging_split = self._mode == "split" and not self.holding_original and abs(pos.x() - self._split_x()) <= HANDLE_GRAB
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        pos = event.position()
        if self._press is None:
            near = self._mode == "split" and self._original is not None and abs(pos.x() - self._split_x()) <= HANDLE_GRAB
            self.setCursor(Qt.CursorShape.SplitHCursor if near else Qt.CursorShape.ArrowCursor)
            return
        if (pos - self._press).manhattanLength() > CLICK_SLOP:
            self._moved = True
        if self._dragging_split:
            self.split = min(1.0, max(0.0, pos.x() / max(1, self.width())))
        elif self._moved:
            self.pan = self._press_pan + (pos - self._press)
            self._fit_pending = False
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._press is None:
            return super().mouseReleaseEvent(event)
        pos = event.position()
        clicked = not self._moved and not self._dragging_split
        self._press, self._dragging_split = None, False
        self.setCursor(Qt.CursorShape.ArrowCursor)
        if clicked:
            idx = self.face_at(pos)
            if idx >= 0:
                self.faceClicked.emit(idx)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def keyPressEvent(self, event) -> None:
        if event.key() == HOLD_KEY and not event.isAutoRepeat():
            self.set_holding_original(True)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == HOLD_KEY and not event.isAutoRepeat():
            self.set_holding_original(False)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self.set_holding_original(False)  # a key released elsewhere must not leave it stuck
        super().focusOutEvent(event)

    def set_holding_original(self, on: bool) -> None:
        if on != self.holding_original:
            self.holding_original = on
            self.holdOriginalChanged.emit(on)
            self.update()

    # ---------------------------------------------------------------------------- paint
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 38, 42))
        if self._original is None:
            p.setPen(QColor(170, 170, 175))
            f = QFont(self.font())
            f.setPointSizeF(f.pointSizeF() * 1.15)
            p.setFont(f)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 2.0)
        result = self._result if self._result is not None else self._original
        # an upscaled result is drawn at the original's size: both share one coordinate system
        result_scale = result.width() / max(1, self._original.width())
        panes = self._panes()
        for n, (rect, which) in enumerate(panes):
            p.save()
            p.setClipRect(rect)
            tf = QTransform().translate(rect.left() + self.pan.x(), rect.top() + self.pan.y()).scale(self.zoom, self.zoom)
            if self.holding_original or which == "original":
                p.setTransform(tf)
                p.drawImage(0, 0, self._original)
            elif which == "result":
                p.setTransform(QTransform(tf).scale(1 / result_scale, 1 / result_scale))
                p.drawImage(0, 0, result)
            else:  # split: original left of the line, result right of it
                sx = self._split_x()
                p.setClipRect(QRectF(rect.left(), rect.top(), sx - rect.left(), rect.height()))
                p.setTransform(tf)
                p.drawImage(0, 0, self._original)
                p.resetTransform()
                p.setClipRect(QRectF(sx, rect.top(), rect.right() - sx, rect.height()))
                p.setTransform(QTransform(tf).scale(1 / result_scale, 1 / result_scale))
                p.drawImage(0, 0, result)
            p.resetTransform()
            p.setClipRect(rect)
            self._paint_boxes(p, rect)
            self._paint_caption(p, rect, which)
            p.restore()
        if self._mode == "split" and not self.holding_original:
            self._paint_split_handle(p)
        elif self._mode == "side" and not self.holding_original:
            p.fillRect(QRectF(self.width() / 2 - 1, 0, 2, self.height()), QColor(20, 20, 20))
        p.end()

    def _paint_boxes(self, p: QPainter, rect: QRectF) -> None:
        for i, (x0, y0, x1, y1) in enumerate(self.boxes):
            inc = self.included[i] if i < len(self.included) else True
            colour = QColor(80, 220, 120) if inc else QColor(200, 200, 200, 160)
            pen = QPen(colour, 3 if i == self.current_face else 1.5)
            if not inc:
                pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            tl = rect.topLeft() + self.pan + QPointF(x0, y0) * self.zoom
            br = rect.topLeft() + self.pan + QPointF(x1, y1) * self.zoom
            box = QRectF(tl, br)
            p.drawRect(box)
            label = str(i + 1)
            fm = p.fontMetrics()
            tag = QRectF(box.left(), box.top() - fm.height() - 2, fm.horizontalAdvance(label) + 8, fm.height() + 2)
            if tag.top() < rect.top():
                tag.moveTop(box.top())
            p.fillRect(tag, colour)
            p.setPen(QColor(0, 0, 0))
            p.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)

    def _paint_caption(self, p: QPainter, rect: QRectF, which: str) -> None:
        def tag(text: str, right: bool) -> None:
            fm = p.fontMetrics()
            w, h = fm.horizontalAdvance(text) + 14, fm.height() + 6
            x = rect.right() - w - 8 if right else rect.left() + 8
            box = QRectF(x, rect.top() + 8, w, h)
            p.fillRect(box, QColor(0, 0, 0, 150))
            p.setPen(QColor(235, 235, 235))
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)

        if self.holding_original or which == "original":
            tag("Original" + (" (O held)" if self.holding_original else ""), False)
        elif which == "result":
            tag(self.result_label, self._mode == "side")
        else:
            tag("Original", False)
            tag(self.result_label, True)

    def _paint_split_handle(self, p: QPainter) -> None:
        x = self._split_x()
        p.setPen(QPen(QColor(255, 255, 255, 220), 2))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        cy = self.height() / 2
        p.setBrush(QColor(255, 255, 255, 230))
        p.setPen(QPen(QColor(40, 40, 40), 1))
        p.drawEllipse(QPointF(x, cy), 11, 11)
        p.setPen(QPen(QColor(40, 40, 40), 2))
        p.drawLine(QPointF(x - 5, cy), QPointF(x - 2, cy - 3))
        p.drawLine(QPointF(x - 5, cy), QPointF(x - 2, cy + 3))
        p.drawLine(QPointF(x + 5, cy), QPointF(x + 2, cy - 3))
        p.drawLine(QPointF(x + 5, cy), QPointF(x + 2, cy + 3))
