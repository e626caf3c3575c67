"""The log: every message of the application and the engine, viewable and copyable into a bug
report. A logging.Handler forwards records through a Qt signal, so engine threads can log safely."""

from __future__ import annotations

import logging
import platform
import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QDialog, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

LOGGER_NAME = "cfr"
MAX_LINES = 5000


class _Bridge(QObject):
    record = Signal(str)


class QtLogHandler(logging.Handler):
    """Keeps the text of every record (for a log view opened later) and emits it as it comes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.bridge = _Bridge()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a bad format string must not take the application down
            text = str(record.msg)
        self.lines.append(text)
        del self.lines[:-MAX_LINES]
        try:
            self.bridge.record.emit(text)
        except RuntimeError:  # the bridge was deleted at shutdown
            pass


def environment_summary() -> str:
    from app import __version__

    try:
        from PySide6 import __version__ as qt_version
    except ImportError:  # pragma: no cover
        qt_version = "?"
    return (
        f"CFR Studio {__version__}, Python {sys.version.split()[0]}, PySide6 {qt_version}, "
        f"{platform.platform()}"
    )


class LogView(QDialog):
    """A non-modal window with the log text (selectable) and a button that copies all of it."""

    def __init__(self, handler: QtLogHandler, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        self.setWindowTitle("CFR Studio — log")
        self.setModal(False)
        self.resize(760, 420)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlainText("\n".join([environment_summary(), *handler.lines]))
        copy = QPushButton("Copy all", self)
        copy.setObjectName("copyLogButton")
        copy.clicked.connect(self.copy_all)
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(copy)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        handler.bridge.record.connect(self.text.appendPlainText)

    def copy_all(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())
