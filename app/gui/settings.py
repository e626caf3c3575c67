"""Settings remembered between runs (last folders, k, blend, window geometry, recent files).

Stored with QSettings in an INI file. ``CFR_STUDIO_SETTINGS`` names another file: tests point it
into a temporary folder so they never read or write the user's own settings."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10
ENV_VAR = "CFR_STUDIO_SETTINGS"


def settings_file() -> Path:
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    probe = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "CFR Studio", "cfr-studio")
    return Path(probe.fileName())


class Settings:
    """Typed access to the few values the application keeps."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else settings_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._q = QSettings(str(self.path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._q.sync()

    # generic helpers -------------------------------------------------------------------------
    def _get(self, key: str, default, kind):
        value = self._q.value(key, default)
        if value is None:
            return default
        try:
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default

    # the quality knob ------------------------------------------------------------------------
    @property
    def k(self) -> int | str:
        value = str(self._q.value("restore/k", 2))
        if value == "auto":
            return "auto"
        try:
            return min(6, max(1, int(value)))
        except ValueError:
            return 2

    @k.setter
    def k(self, value: int | str) -> None:
        self._q.setValue("restore/k", str(value))

    @property
    def blend(self) -> float:
        return min(1.0, max(0.0, self._get("restore/blend", 1.0, float)))

    @blend.setter
    def blend(self, value: float) -> None:
        self._q.setValue("restore/blend", float(value))

    @property
    def upscale(self) -> int | None:
        value = str(self._q.value("restore/upscale", ""))
        return int(value) if value in ("2", "4") else None

    @upscale.setter
    def upscale(self, value: int | None) -> None:
        self._q.setValue("restore/upscale", str(value or ""))

    @property
    def upscale_model(self) -> str:
        value = str(self._q.value("restore/upscale_model", "sesr"))
        return value if value in ("sesr", "falsr") else "sesr"

    @upscale_model.setter
    def upscale_model(self, value: str) -> None:
        self._q.setValue("restore/upscale_model", value if value in ("sesr", "falsr") else "sesr")

    @property
    def model_path(self) -> str:
        return self._get("restore/model", "", str)

    @model_path.setter
    def model_path(self, value: str) -> None:
        self._q.setValue("restore/model", str(value or ""))

    # folders ---------------------------------------------------------------------------------
    def folder(self, name: str) -> str:
        """Last folder used for ``name`` ('open', 'save', 'batch_in', 'batch_out', 'export')."""
        return self._get(f"folders/{name}", "", str)

    def set_folder(self, name: str, value: str | os.PathLike) -> None:
        self._q.setValue(f"folders/{name}", str(value))

    # batch options -----------------------------------------------------------------------------
    def batch_option(self, name: str, default):
        return self._get(f"batch/{name}", default, type(default))

    def set_batch_option(self, name: str, value) -> None:
        self._q.setValue(f"batch/{name}", value)

    # recent files ----------------------------------------------------------------------------
    @property
    def recent_files(self) -> list[str]:
        value = self._q.value("recent/files", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def add_recent(self, path: str | os.PathLike) -> list[str]:
        p = str(Path(path).resolve())
        files = [f for f in self.recent_files if f != p]
        files.insert(0, p)
        files = files[:MAX_RECENT]
        self._q.setValue("recent/files", files)
        return files

    def clear_recent(self) -> None:
        self._q.setValue("recent/files", [])

    # window ------------------------------------------------------------------------------------
    @property
    def geometry(self) -> QByteArray | None:
        value = self._q.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._q.setValue("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        value = self._q.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self._q.setValue("window/state", value)

    @property
    def view_mode(self) -> str:
        value = self._get("view/mode", "split", str)
        return value if value in ("split", "side", "original", "result") else "split"

    @view_mode.setter
    def view_mode(self, value: str) -> None:
        self._q.setValue("view/mode", value)
