"""Where the shipped files live, both from a source checkout and in the frozen bundle.

From source, ``models/`` and ``resources/`` sit beside the ``app`` package (the repository root).
In the PyInstaller bundle they are data folders inside the bundle's own directory, which the
bootloader publishes as ``sys._MEIPASS`` (``dist/cfr-studio/_internal`` for the onedir build, a
temporary folder for the onefile one). Nothing here imports Qt or the engine, so every part of
the app (core included) may use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["app_root", "is_frozen", "models_dir", "resources_dir"]


def is_frozen() -> bool:
    """True inside the PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def app_root() -> Path:
    """The folder holding ``models/`` and ``resources/``: the bundle's data folder when frozen,
    else the repository root (the parent of the ``app`` package)."""
    if is_frozen():
        return Path(sys._MEIPASS)  # type: ignore[attr-defined]
    return Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """The shipped ONNX models: $CFR_MODELS if set (tests, other model sets), else ``models/``."""
    env = os.environ.get("CFR_MODELS")
    return Path(env) if env else app_root() / "models"


def resources_dir() -> Path:
    """Icons, the .desktop file and the self-test's face photo: ``resources/``."""
    return app_root() / "resources"
