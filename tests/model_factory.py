"""Tiny ONNX models that obey the CFRNet contract (DESIGN.md §2), built with onnx.helper (no
torch), so the restorer and the pipeline can be tested with real ONNX Runtime sessions before
(and independently of) the trained CFRNet.

The model is a small residual conv net:
``out = clip(x + strength · (blur(x) − x) − pull · relu(x − ceiling) + tone, 0, 1)``
computed as Conv(3→9: a Gaussian blur, the identity, and x − ceiling, per channel) → Relu →
Conv(9→3, 1×1) → Add(x) → Clip. Each cycle moves the face towards its smoothed self, so cycles
change the image and the change between cycles shrinks (slowly: low frequencies barely blur).
``pull`` darkens what is brighter than ``ceiling`` by a fixed fraction per cycle, so with a
strong pull and a weak blur the change between cycles falls geometrically — a model that
reaches its fixed point in a few cycles, as CFRNet is trained to. ``tone`` (a bias) shifts the
output, which lets a test tell cycles apart even on a flat image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TEMPLATE_TEXT = json.dumps(
    [[96.49, 119.97], [159.45, 120.10], [128.32, 157.01], [100.63, 185.71], [156.54, 185.58]]
)


def _gaussian(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def build_cfrnet_like(
    strength: float = 0.5,
    tone: float = 0.0,
    size: int | None = 256,
    pull: float = 0.0,
    ceiling: float = 0.5,
    blur: int = 5,
    sigma: float = 1.5,
    name: str = "cfrnet-test",
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """The FP32 graph (see the module doc). ``size`` None makes H and W dynamic."""
    c_mid = 9
    w1 = np.zeros((c_mid, 3, blur, blur), np.float32)
    ident = np.zeros((blur, blur), np.float32)
    ident[blur // 2, blur // 2] = 1.0
    g = _gaussian(blur, sigma)
    for c in range(3):
        w1[c, c] = g  # channel c: blurred colour c
        w1[3 + c, c] = ident  # channel 3+c: colour c itself
        w1[6 + c, c] = ident  # channel 6+c: colour c − ceiling (bias), kept above 0 by the Relu
    b1 = np.zeros(c_mid, np.float32)
    b1[6:] = -ceiling
    w2 = np.zeros((3, c_mid, 1, 1), np.float32)
    for c in range(3):
        w2[c, c, 0, 0] = strength
        w2[c, 3 + c, 0, 0] = -strength
        w2[c, 6 + c, 0, 0] = -pull
    b2 = np.broadcast_to(np.asarray(tone, np.float32), (3,)).copy()  # one tone, or one per colour (a tint)

    n = "N" if dynamic_batch else 1
    hw = [size, size] if size is not None else ["H", "W"]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, *hw])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [n, 3, *hw])
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
    ]
    pad = blur // 2
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[blur, blur], pads=[pad] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["input", "c2"], ["sum"]),
        helper.make_node("Clip", ["sum", "lo", "hi"], ["output"]),
    ]
    graph = helper.make_graph(nodes, name, [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime we might meet
    onnx.checker.check_model(model)
    return model


def _set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def contract_metadata(model: onnx.ModelProto, precision: str, name: str, size: int = 256) -> dict[str, str]:
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0)
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = next(t for t in model.graph.initializer if t.name == node.input[1])
            macs += int(np.prod(w.dims)) * size * size
    return {
        "name": name,
        "version": "0.0-test",
        "precision": precision,
        "params": str(params),
        "macs_per_cycle": str(macs),
        "recommended_k_psnr": "2",
        "recommended_k_lpips": "3",
        "template": TEMPLATE_TEXT,
        "trained_on": "nothing: a hand-built test model (blur towards a fixed point)",
        "licence": "test fixture, no licence needed",
    }


def make_cfrnet_like(
    path: str | Path,
    precision: str = "fp32",
    strength: float = 0.5,
    tone: float = 0.0,
    size: int | None = 256,
    pull: float = 0.0,
    name: str = "cfrnet-test",
    calibration: list[np.ndarray] | None = None,
) -> Path:
    """Write a CFRNet-contract model to ``path``: FP32, or INT8 (static QDQ, QUInt8 activations
    with reduce_range, per-channel QInt8 weights — as DESIGN.md §10 prescribes for the real one),
    with the contract's metadata_props. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_cfrnet_like(strength=strength, tone=tone, size=size, pull=pull, name=name)
    if precision == "fp32":
        _set_metadata(model, contract_metadata(model, "fp32", name, size or 256))
        onnx.save(model, str(path))
        return path
    if precision != "int8":
        raise ValueError(f"precision is 'fp32' or 'int8', not {precision!r}")

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32_path = path.with_name(path.stem + ".fp32-tmp.onnx")
    onnx.save(model, str(fp32_path))
    side = size or 64
    if calibration is None:
        rng = np.random.default_rng(0)
        # smooth random images in [0, 1]: the range a face crop has
        calibration = [
            np.clip(rng.random((1, 3, side, side), dtype=np.float32) * 0.6 + 0.2 + 0.2 * np.sin(i), 0, 1)
            for i in range(4)
        ]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"input": x.astype(np.float32)}

    try:
        quantize_static(
            str(fp32_path),
            str(path),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    finally:
        fp32_path.unlink(missing_ok=True)
    qmodel = onnx.load(str(path))
    _set_metadata(qmodel, contract_metadata(model, "int8", name, size or 256))
    onnx.save(qmodel, str(path))
    return path
