"""numpy arrays ⇄ Qt images. The engine works on H×W×3 uint8/uint16/float arrays; Qt paints
QImage/QPixmap. Only the GUI converts, and only for display (16-bit data is reduced to 8 bits
for the screen, never for saving)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_display_uint8(rgb: np.ndarray) -> np.ndarray:
    """An RGB (or grey) array of any engine dtype as contiguous H×W×3 uint8."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = (a >> 8).astype(np.uint8)
    else:  # float in [0, 1]
        out = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def array_to_qimage(rgb: np.ndarray) -> QImage:
    """A deep-copied QImage (Format_RGB888) of an engine array."""
    a = to_display_uint8(rgb)
    h, w = a.shape[:2]
    img = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return img.copy()  # the QImage must not keep pointing into the numpy buffer


def qimage_to_array(image: QImage) -> np.ndarray:
    """H×W×3 uint8 RGB from any QImage (alpha is dropped: pasted images are photos)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    bpl = img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def thumbnail(rgb: np.ndarray, size: int) -> QImage:
    """A size×size-bounded QImage of an array (area-averaged, so it does not alias)."""
    import cv2

    a = to_display_uint8(rgb)
    h, w = a.shape[:2]
    s = size / max(h, w)
    if s < 1:
        a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return array_to_qimage(a)
