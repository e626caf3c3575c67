"""app.core.native_log: MediaPipe's known native start-up messages are dropped, nothing else is."""

import os
import sys
import threading

from app.core.native_log import filter_lines, quiet_native_stderr

CHATTER = (
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "W0000 00:00:1795574746.454464   13040 inference_feedback_manager.cc:114] Feedback manager "
    "requires a model with a single signature inference. Disabling support for feedback tensors.\n"
    "I0000 00:00:1795580174.200127   24757 gl_context_egl.cc:85] Successfully initialized EGL. Major : 1\n"
)


def test_filter_keeps_everything_but_the_known_messages():
    other = "E0000 00:00:1.0 1 calculator_graph.cc:10] a real error\nTraceback (most recent call last):\n"
    assert filter_lines(CHATTER + other) == other
    assert filter_lines("plain text without newline") == "plain text without newline"


def test_native_writes_are_filtered_and_python_writes_come_back(capfd):
    with quiet_native_stderr():
        os.write(2, CHATTER.encode())
        os.write(2, b"native: something unexpected\n")
        print("python: a warning", file=sys.stderr, flush=True)
    os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "inference_feedback_manager" not in err
    assert "native: something unexpected" in err
    assert "python: a warning" in err
    assert err.index("python: a warning") < err.index("after the block")


def test_nested_and_concurrent_blocks_restore_stderr(capfd):
    start = threading.Barrier(3)

    def worker(i):
        start.wait()
        with quiet_native_stderr():
            with quiet_native_stderr():
                os.write(2, CHATTER.encode() + f"worker {i}\n".encode())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(2, b"stderr is the terminal again\n")
    err = capfd.readouterr().err
    assert all(f"worker {i}" in err for i in range(3))
    assert "XNNPACK" not in err
    assert err.rstrip().endswith("stderr is the terminal again")
