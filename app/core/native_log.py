"""Keep MediaPipe's native start-up chatter off the user's terminal.

MediaPipe's C++ code (TensorFlow Lite, absl logging) writes straight to file descriptor 2 when a
graph first runs: "Created TensorFlow Lite XNNPACK delegate", "All log messages before
absl::InitializeLog() …", "Feedback manager requires a model with a single signature …". They are
harmless, no environment variable silences them in mediapipe 0.10.21, and to a user they look like
errors. ``quiet_native_stderr()`` points fd 2 at a temporary file while a block runs, then writes
back to the real stderr every line that is *not* one of those known messages, so nothing else is
lost (Python's own writes made meanwhile, from any thread, come back too, only later).

fd 2 belongs to the whole process, so nested or concurrent blocks (batch workers each building a
detector) share one redirection: the first to enter redirects, the last to leave restores.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["BENIGN_NATIVE_MESSAGES", "quiet_native_stderr", "filter_lines"]

# What MediaPipe 0.10.21 prints on every first run of a graph: information and two known
# warnings; any other warning, error (E) or fatal (F) line passes.
BENIGN_NATIVE_MESSAGES = (
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.\s*$"),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"),
    re.compile(r"^W\d{4} [\d:.]+\s+\d+ inference_feedback_manager\.cc:\d+\] "),
    re.compile(r"^W\d{4} [\d:.]+\s+\d+ landmark_projection_calculator\.cc:\d+\] "),
    # absl INFO lines (I…), e.g. "Successfully initialized EGL" where a display exists
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ [\w.]+\.cc:\d+\] "),
)

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_capture = None  # the temporary file fd 2 points at while redirected


def filter_lines(text: str) -> str:
    """``text`` without the lines that match BENIGN_NATIVE_MESSAGES."""
    kept = [line for line in text.splitlines(keepends=True)
            if not any(p.match(line) for p in BENIGN_NATIVE_MESSAGES)]
    return "".join(kept)


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.flush()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Run the block with fd 2 captured; afterwards replay what is not known chatter. Does
    nothing where the process has no usable fd 2 (a windowed app without a console)."""
    global _depth, _saved_fd, _capture
    with _lock:
        if _depth == 0:
            try:
                _flush_python_stderr()
                capture = tempfile.TemporaryFile(mode="w+b")
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
            except (OSError, ValueError):
                entered = False
            else:
                _saved_fd, _capture, entered = saved, capture, True
        else:
            entered = _saved_fd is not None
        if entered:
            _depth += 1
    try:
        yield
    finally:
        if entered:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _flush_python_stderr()
                    os.dup2(_saved_fd, 2)
                    os.close(_saved_fd)
                    _capture.seek(0)
                    text = _capture.read().decode("utf-8", "replace")
                    _capture.close()
                    _saved_fd = _capture = None
                    rest = filter_lines(text)
                    if rest:
                        with contextlib.suppress(OSError):
                            os.write(2, rest.encode("utf-8", "replace"))
