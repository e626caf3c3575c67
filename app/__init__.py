"""CFR Studio: restore faces in old photographs."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("cfr-studio")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
