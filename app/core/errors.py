"""The engine's exceptions and cancellation. Every message names the file and says what is wrong
in words a photographer understands; the CLI and the GUI show ``str(error)`` as it is."""

from __future__ import annotations

import threading
from typing import Callable, Optional, Union


class CfrError(Exception):
    """Base of the errors the user is shown."""


class ImageError(CfrError):
    """An image file cannot be read or written (truncated, not an image, too large, …)."""


class ModelError(CfrError):
    """A model file is missing, unreadable or not the model we expect."""


class NoFacesError(CfrError):
    """A photo in which no face was found (where the caller needs one)."""


class Cancelled(CfrError):
    """The user cancelled the work; nothing half-done was written."""


# Long work takes `progress(done, total, message)` and `cancel`, either a threading.Event or a
# callable returning True when the work should stop.
ProgressFn = Callable[[int, int, str], None]
CancelToken = Optional[Union[threading.Event, Callable[[], bool]]]


def cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check_cancel(cancel: CancelToken) -> None:
    """Raise Cancelled if the work should stop (call it between steps)."""
    if cancelled(cancel):
        raise Cancelled("cancelled")
