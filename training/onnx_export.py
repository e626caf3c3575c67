"""Export torch models to ONNX and quantise them to INT8: one path for CFRNet, SESR and FALSR.

- ``export_onnx`` writes an FP32 ONNX file (input ``input``, output ``output``), with a dynamic batch
  axis and optionally dynamic height/width (super-resolution runs on any image size), and the
  model card's facts in ``metadata_props`` (read back by ``app.core.onnx_session.OnnxModel``).
- ``quantize_int8`` makes the static-QDQ INT8 twin of an FP32 file: QUInt8 activations, per-channel
  QInt8 weights, ``reduce_range=True`` (DESIGN §10: without it the u8s8 kernels saturate on this
  non-VNNI CPU and the output loses ~15 dB). Input and output stay float, so the two files are
  interchangeable.
- ``compare_with_torch`` runs both on the same inputs and reports the largest difference.

Both writers are atomic: a temporary file in the target folder, renamed when complete.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import onnx
import torch

from app.core.onnx_session import OnnxModel

__all__ = [
    "export_onnx",
    "quantize_int8",
    "compare_with_torch",
    "set_metadata",
    "read_metadata",
    "count_params",
]

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, object]) -> None:
    """Replace/insert ``metadata_props`` entries (values stored as strings), keeping the others."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update({str(k): str(v) for k, v in metadata.items()})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    model = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _save_atomic(model: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        onnx.checker.check_model(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_onnx(
    torch_model: torch.nn.Module,
    path: str | os.PathLike,
    example_input: torch.Tensor,
    metadata: Mapping[str, object],
    dynamic_batch: bool = True,
    opset: int = 17,
    *,
    dynamic_hw: bool = False,
    precision: str = "fp32",
) -> Path:
    """Export ``torch_model`` (put in eval mode) to ``path`` and return the path.

    ``example_input`` is one N×C×H×W tensor. ``dynamic_hw`` makes height and width symbolic (the
    output's too), for fully convolutional models such as SESR. ``metadata`` goes into
    ``metadata_props`` together with ``precision``; ``params`` is filled in when not given.
    """
    path = Path(path)
    torch_model = torch_model.eval()
    axes: dict[int, str] = {}
    if dynamic_batch:
        axes[0] = "N"
    if dynamic_hw:
        axes[2], axes[3] = "H", "W"
    out_axes = {i: ("s" + n if i in (2, 3) else n) for i, n in axes.items()}
    meta = {"precision": precision, "params": count_params(torch_model)}
    meta.update(dict(metadata))

    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: one self-contained file, plain Conv/Add/... nodes that
            # ONNX Runtime's quantiser handles, and dynamic axes without a torch.export trace.
            torch.onnx.export(
                torch_model,
                (example_input,),
                os.fspath(raw),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: out_axes} if axes else None,
                do_constant_folding=True,
            )
        model = onnx.load(os.fspath(raw))
    set_metadata(model, meta)
    model.producer_name = "cfr-studio training"
    _save_atomic(model, path)
    return path


class _Calibration:
    """The ``CalibrationDataReader`` protocol over an iterable of N×C×H×W float32 arrays."""

    def __init__(self, inputs: Iterable[np.ndarray], name: str):
        self._it = iter(inputs)
        self._name = name
        self.count = 0

    def get_next(self):
        try:
            x = next(self._it)
        except StopIteration:
            return None
        self.count += 1
        return {self._name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):  # only needed by some calibrators; ours are single-pass
        raise NotImplementedError("calibration inputs are read once")


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_inputs: Iterable[np.ndarray],
    metadata: Mapping[str, object] | None = None,
    *,
    calibrate_method: str = "minmax",
    op_types_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """Static QDQ INT8 copy of ``fp32_path`` at ``int8_path``, calibrated on ``calibration_inputs``.

    The FP32 file's metadata is carried over, updated with ``metadata`` and ``precision='int8'``.
    ``calibrate_method``: 'minmax' (default), 'entropy' or 'percentile'. ``op_types_to_quantize``
    (e.g. ``["Conv"]``) and ``nodes_to_exclude`` leave the other ops in float between DQ and Q.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if calibrate_method not in methods:
        raise ValueError(f"calibrate_method must be one of {sorted(methods)}")
    meta = read_metadata(fp32_path)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    meta["precision"] = "int8"
    input_name = OnnxModel(fp32_path, threads=1).input_names[0]
    reader = _Calibration(calibration_inputs, input_name)

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        out = Path(tmpdir) / "int8.onnx"
        # shape inference + graph cleanup first, as ONNX Runtime recommends for static quantisation
        quant_pre_process(os.fspath(fp32_path), os.fspath(pre), skip_symbolic_shape=False)
        quantize_static(
            os.fspath(pre),
            os.fspath(out),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            calibrate_method=methods[calibrate_method],
            op_types_to_quantize=op_types_to_quantize,
            nodes_to_exclude=nodes_to_exclude,
        )
        if reader.count == 0:
            raise ValueError("quantize_int8: no calibration inputs were given")
        model = onnx.load(os.fspath(out))
    set_metadata(model, meta)
    _save_atomic(model, int8_path)
    return int8_path


def compare_with_torch(
    torch_model: torch.nn.Module,
    onnx_path: str | os.PathLike,
    inputs: Iterable[torch.Tensor | np.ndarray],
) -> dict[str, float]:
    """Run ``torch_model`` and the ONNX file on the same inputs; return the largest absolute and
    relative (to the torch output's max magnitude) differences over all of them."""
    torch_model = torch_model.eval()
    session = OnnxModel(onnx_path, threads=1)
    max_abs, max_rel = 0.0, 0.0
    for x in inputs:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        with torch.no_grad():
            ref = torch_model(xt).numpy()
        got = session.run1(xt.numpy())
        if got.shape != ref.shape:
            raise AssertionError(f"{onnx_path}: output shape {got.shape}, torch gives {ref.shape}")
        diff = float(np.max(np.abs(got - ref)))
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(np.max(np.abs(ref))), 1e-12))
    return {"max_abs": max_abs, "max_rel": max_rel}
