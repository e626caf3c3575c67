"""The one ONNX Runtime session wrapper, used by the restorer, the upscaler, the metrics, the
device report and the tests: explicit thread count, metadata read from the file, and errors that
name the file and say what is wrong with it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.core.errors import ModelError

__all__ = ["OnnxModel", "ModelError"]


@dataclass
class OnnxModel:
    """An ONNX file opened for inference on the CPU.

    ``threads`` is the intra-op thread count (0 lets ONNX Runtime choose). Inter-op parallelism is
    off: our graphs are chains, and a second pool only competes for the same two cores.
    ``spinning``: whether idle pool threads busy-wait for work (ONNX Runtime's default). Off here:
    on a machine whose cores other work shares (the app's GUI, other programs, a second face), a
    spinning thread burns the core that the thread it waits for needs; measured on the 2-core dev
    VM with other jobs running, CFRNet INT8 at 2 threads took ~2× longer spinning than not
    (benchmarks/bench_cfrnet_cpu.py times both). ``profile_prefix``: turn on ONNX Runtime's
    profiler (benchmarks; ``session.end_profiling()`` returns the JSON file it wrote).
    """

    path: Path
    threads: int = 0
    spinning: bool = False
    profile_prefix: str | None = None
    session: ort.InferenceSession = field(init=False, repr=False)
    metadata: dict[str, str] = field(init=False)
    input_names: list[str] = field(init=False)
    output_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        if self.path.stat().st_size == 0:
            raise ModelError(f"{self.path}: model file is empty")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(self.threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        if self.profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = self.profile_prefix
        try:
            self.session = ort.InferenceSession(
                os.fspath(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise ModelError(f"{self.path}: not a valid ONNX model or corrupt ({exc})") from exc
        meta = self.session.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map or {})
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(outputs, inputs)

    def run1(self, x: np.ndarray) -> np.ndarray:
        """A model with one input and (at least) one output: run it on ``x``, return the first output."""
        return self.session.run(None, {self.input_names[0]: x})[0]
