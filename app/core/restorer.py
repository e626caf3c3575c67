"""The face restorer: one CFRNet ONNX session, run for k cycles (DESIGN.md §2).

One cycle = one call of the network; k cycles feed the output back as the input k times and
nothing else happens between them. ``restore`` is a generator so the GUI can show each cycle as
soon as it exists and the user can cancel between cycles. ``k="auto"`` stops at the fixed point:
when the mean absolute change made by a cycle falls below ``AUTO_THRESHOLD`` (the first cycle is
compared with the input), and after ``MAX_AUTO_CYCLES`` at the most.

INT8 and FP32 files are interchangeable: both take and give float32 N×3×S×S in [0, 1] (INT8 is
static QDQ inside the graph). A Restorer holds no per-call state, so one instance may serve
several threads (ONNX Runtime sessions are safe to run concurrently).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from app.core.errors import CancelToken, ModelError, check_cancel
from app.core.onnx_session import OnnxModel
from app.core.upscaler import models_dir  # the one definition of where shipped models live

__all__ = [
    "AUTO_THRESHOLD",
    "MAX_AUTO_CYCLES",
    "MAX_CYCLES",
    "Restorer",
    "default_model_path",
    "models_dir",
    "parse_k",
    "to_float01",
]

# Mean absolute change per cycle (in [0, 1] units) below which a face is at its fixed point:
# about a quarter of one 8-bit grey level on average, which no one sees.
AUTO_THRESHOLD = 0.004
MAX_AUTO_CYCLES = 6
MAX_CYCLES = 32  # a bound for an explicit k, so a typo (k = 2000) cannot hang the app

HOW_TO_GET = (
    "The INT8 CFRNet is models/cfrnet_int8.onnx (FP32: models/cfrnet_fp32.onnx), produced by the "
    "CFRNet training (training/train_cfrnet.py, then its ONNX export) and shipped in the models/ "
    "folder of CFR Studio: get it back with `git checkout -- models/` in the project folder or a "
    "fresh clone, or choose another model file."
)


def default_model_path(precision: str = "int8") -> Path:
    """``models/cfrnet_int8.onnx`` or ``models/cfrnet_fp32.onnx`` (the file may not exist)."""
    if precision not in ("int8", "fp32"):
        raise ValueError(f"precision is 'int8' or 'fp32', not {precision!r}")
    return models_dir() / f"cfrnet_{precision}.onnx"


def parse_k(k: int | str) -> int | str:
    """A cycle count as the user gave it (2, '2', 'auto') → int ≥ 1 or 'auto'; ValueError else."""
    if isinstance(k, str):
        text = k.strip().lower()
        if text == "auto":
            return "auto"
        try:
            k = int(text)
        except ValueError:
            raise ValueError(f"k must be a whole number of cycles or 'auto', not {k!r}") from None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a whole number of cycles or 'auto', not {k!r}")
    k = int(k)
    if not 1 <= k <= MAX_CYCLES:
        raise ValueError(f"k must be between 1 and {MAX_CYCLES} cycles, not {k}")
    return k


def to_float01(image: np.ndarray) -> np.ndarray:
    """H×W×3 (or grey H×W / H×W×1) uint8, uint16 or float [0, 1] → float32 H×W×3 in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"a face crop is H×W×3, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(a.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported crop dtype {a.dtype}")


class Restorer:
    """``Restorer(path).restore(crop, k)`` yields each cycle's restored face.

    ``model_path`` None = the INT8 CFRNet in models/. ``threads`` = ONNX Runtime intra-op threads
    (0: its choice; 1 for a batch worker that runs beside others). Raises ModelError naming the
    file, saying what is wrong and how to get a good one.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 0) -> None:
        self.path = Path(model_path) if model_path is not None else default_model_path("int8")
        if not self.path.is_file():
            raise ModelError(f"The face restoration model '{self.path}' is missing. {HOW_TO_GET}")
        try:
            self.model = OnnxModel(self.path, threads=threads)
        except ModelError as exc:
            raise ModelError(f"{exc}. The model file may be damaged or incomplete. {HOW_TO_GET}") from exc
        self.threads = int(threads)
        self.metadata: dict[str, str] = dict(self.model.metadata)
        self._check_signature()
        self.precision = self.metadata.get("precision") or ("int8" if "int8" in self.path.name.lower() else "fp32")
        name = self.metadata.get("name") or self.path.stem
        version = self.metadata.get("version")
        self.name = f"{name} {version} {self.precision.upper()}" if version else f"{name} {self.precision.upper()}"

    def _check_signature(self) -> None:
        """The CFRNet contract: one float input N×3×S×S named 'input', one output 'output'."""
        inputs = self.model.session.get_inputs()
        outputs = self.model.session.get_outputs()
        problem = None
        if len(inputs) != 1 or len(outputs) < 1:
            problem = f"has {len(inputs)} inputs and {len(outputs)} outputs (a face model has one of each)"
        else:
            shape = inputs[0].shape
            if inputs[0].type != "tensor(float)":
                problem = f"takes {inputs[0].type}, not float32 images"
            elif len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
                problem = f"takes input of shape {shape}, not N×3×H×W"
        if problem:
            raise ModelError(f"'{self.path}' is not a face restoration model: it {problem}. {HOW_TO_GET}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        # the crop side: fixed by the graph, else the contract's 256
        self.size = int(shape[2]) if isinstance(shape[2], int) and shape[2] > 0 else 256
        self.dynamic_batch = not (isinstance(shape[0], int) and shape[0] > 0)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One cycle on an N×3×S×S float32 batch (run image by image if the graph's batch is fixed)."""
        try:
            if self.dynamic_batch or x.shape[0] == 1:
                y = self.model.run({self.input_name: x})[0]
            else:
                y = np.concatenate([self.model.run({self.input_name: x[i : i + 1]})[0] for i in range(len(x))])
        except Exception as exc:  # ONNX Runtime's own exception types
            raise ModelError(f"'{self.path}' failed on a {x.shape[2]}×{x.shape[3]} face: {exc}") from exc
        if y.shape != x.shape:
            raise ModelError(
                f"'{self.path}' returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
                f"a face restoration model returns the shape it is given. {HOW_TO_GET}"
            )
        # INT8 rounding can step just outside [0, 1]; a NaN would poison every later cycle
        return np.clip(np.nan_to_num(y, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)

    def _prepare(self, crop: np.ndarray) -> np.ndarray:
        x = to_float01(crop)
        if x.shape[:2] != (self.size, self.size):
            raise ValueError(f"the face crop is {x.shape[1]}×{x.shape[0]}; '{self.path.name}' takes {self.size}×{self.size}")
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def restore(self, crop: np.ndarray, k: int | str = 2, cancel: CancelToken = None) -> Iterator[np.ndarray]:
        """Yield the face after cycle 1, 2, … (float32 S×S×3 in [0, 1]), each as soon as it is
        computed. ``k``: a number of cycles, or 'auto' (stop at the fixed point, at most
        MAX_AUTO_CYCLES). ``cancel`` is checked before every cycle (raises Cancelled)."""
        k = parse_k(k)
        auto = k == "auto"
        n = MAX_AUTO_CYCLES if auto else k
        x = self._prepare(crop)
        for _ in range(n):
            check_cancel(cancel)
            y = self._run(x)
            yield y[0].transpose(1, 2, 0)
            if auto and float(np.mean(np.abs(y - x))) < AUTO_THRESHOLD:
                return
            x = y

    def restore_batch(self, crops: Sequence[np.ndarray], k: int | str = 2, cancel: CancelToken = None) -> list[np.ndarray]:
        """The final cycle of each crop, all crops run together as one batch. With 'auto' each
        face stops at its own fixed point (the converged ones leave the batch)."""
        k = parse_k(k)
        if not crops:
            return []
        auto = k == "auto"
        n = MAX_AUTO_CYCLES if auto else k
        x = np.concatenate([self._prepare(c) for c in crops])
        done: list[np.ndarray | None] = [None] * len(crops)
        active = np.arange(len(crops))
        for _ in range(n):
            check_cancel(cancel)
            y = self._run(x)
            if auto:
                change = np.mean(np.abs(y - x), axis=(1, 2, 3))
                still = change >= AUTO_THRESHOLD
                for i in np.flatnonzero(~still):
                    done[active[i]] = y[i]
                active, y = active[still], y[still]
                if len(active) == 0:
                    break
            x = y
        for i, idx in enumerate(active):
            done[idx] = x[i]
        return [d.transpose(1, 2, 0) for d in done]
