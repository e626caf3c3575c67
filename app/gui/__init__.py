"""The PySide6 desktop application.

``create_main_window(path=None)`` builds and shows the main window (opening ``path`` if given)
without entering the event loop, so tools and tests can drive the real window;
``run_app(path=None)`` is what `cfr-studio [PATH]` runs."""

from __future__ import annotations

import sys
from pathlib import Path

APP_NAME = "CFR Studio"


def _application():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("CFR Studio")
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("cfr-studio")
    return app


def create_main_window(path: str | Path | None = None, model_path: str | Path | None = None, settings=None):
    """Build and show the main window; open ``path`` if given. The event loop is the caller's."""
    app = _application()
    from app.gui.main_window import MainWindow, app_icon

    app.setWindowIcon(app_icon())
    window = MainWindow(model_path=model_path, settings=settings)
    window.show()
    if path is not None:
        window.open_path(path)
    return window


def no_display_reason() -> str | None:
    """Why a window cannot be shown here (Linux without a display), else None. Qt itself would
    abort the process with a plugin error that does not say this."""
    import os

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "cfr-studio: no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
        "Run it in a desktop session, under `xvfb-run`, or use the commands: `cfr-studio --help`."
    )


def run_app(path: str | Path | None = None, model_path: str | Path | None = None) -> int:
    """Start the application and run until its window is closed; returns the exit code."""
    reason = no_display_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    app = _application()
    window = create_main_window(path, model_path=model_path)
    code = app.exec()
    window.shutdown()
    return int(code)


__all__ = ["create_main_window", "run_app"]
