"""Walk an ONNX graph (FP32, or INT8 with QDQ pairs) and count, per node, the multiply-accumulates
and the tensors it moves, at a requested input size.

Counting conventions (the tests compute the same numbers by hand):
- Conv: N·Cout·Ho·Wo · (Cin/group)·kh·kw. Bias additions are not MACs.
- ConvTranspose: the arithmetic actually needed, every input pixel scattered onto a kh×kw window:
  N·Cin·Hi·Wi · (Cout/group)·kh·kw. (An NPU that runs it as zero-insertion + convolution executes
  N·Cout·Ho·Wo·(Cin/group)·kh·kw; that figure is kept as ``zero_insertion_macs`` for the
  simulator, it is also the convention of the CARN/FALSR/SESR tables.)
- Gemm / MatMul: M·K·N per (broadcast) batch.
- Element-wise arithmetic (Add, Sub, Mul, Div, PRelu, LeakyRelu, BatchNormalization): one MAC per
  output element. Comparisons and selections (Relu, Clip, Max, Min, MaxPool) cost no MACs.
- AveragePool: kh·kw per output element; GlobalAveragePool: one per input element.
- Resize: nearest 0; linear 2 per resized axis and output element (2^axes taps); cubic 4^axes.
- DepthToSpace, SpaceToDepth, Concat, Transpose, Pad, Slice, Split: no MACs, data movement only.
- Reshape, Flatten, Squeeze, Unsqueeze, Identity, Cast, Dropout and QuantizeLinear/DequantizeLinear
  pairs are folded away (they neither compute nor, on an NPU, move data).
Any other operator is listed by name in ``GraphStats.unknown_ops`` and never silently ignored.

Parameters are the elements of the initializers (or Constant outputs) that feed a node's weight
or bias slots, followed through DequantizeLinear, counted per use; quantisation scales, zero
points, Clip bounds and shape constants are not parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from app.core.errors import ModelError

__all__ = ["LayerStats", "GraphStats", "analyse_model", "load_onnx"]

# Ops that neither compute nor move data on an NPU: their output is an alias of their first input.
ALIAS_OPS = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "Dropout",
    "QuantizeLinear", "DequantizeLinear",
}
# Ops computing shapes or constants, never run on feature maps.
STRUCTURAL_OPS = {"Shape", "Constant", "ConstantOfShape", "Gather", "Range", "Size"}
ACTIVATION_OPS = {"Relu", "Clip", "PRelu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh"}
ELEMENTWISE_MAC_OPS = {"Add", "Sub", "Mul", "Div", "PRelu", "LeakyRelu", "BatchNormalization"}
ELEMENTWISE_FREE_OPS = {"Relu", "Clip", "Max", "Min"}
MOVE_OPS = {"DepthToSpace", "SpaceToDepth", "Concat", "Transpose", "Pad", "Slice", "Split"}
POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}
CONV_OPS = {"Conv", "ConvTranspose"}
MATMUL_OPS = {"Gemm", "MatMul"}
# Which inputs of an op are weights/biases (counted as parameters when they are constants).
WEIGHT_SLOTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "PRelu": (1,), "BatchNormalization": (1, 2, 3, 4), "Add": (0, 1), "Sub": (0, 1),
    "Mul": (0, 1), "Div": (0, 1),
}
KNOWN_OPS = (
    ALIAS_OPS | STRUCTURAL_OPS | ACTIVATION_OPS | ELEMENTWISE_MAC_OPS | ELEMENTWISE_FREE_OPS
    | MOVE_OPS | POOL_OPS | CONV_OPS | MATMUL_OPS | {"Resize", "Upsample"}
)


@dataclass
class LayerStats:
    """One node that does work (aliases and QDQ folded away)."""

    name: str
    op_type: str
    macs: int                      # arithmetic MACs by the conventions above
    params: int                    # constant elements in its weight/bias slots
    inputs: list[str]              # activation tensor names (after folding aliases)
    output: str                    # first output, after folding
    input_shapes: list[tuple[int, ...]]
    output_shape: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)      # effective (dilated) kernel rows, cols
    stride: tuple[int, int] = (1, 1)
    upsample: tuple[int, int] = (1, 1)    # output/input spatial ratio for up-sampling ops
    zero_insertion_macs: int = 0          # ConvTranspose as zero-insertion + conv (else = macs)
    in_per_group: int = 0                 # input channels each output channel sums over (MAC ops)
    fused: list[str] = field(default_factory=list)  # activations folded into this layer

    @property
    def input_elements(self) -> int:
        return sum(int(np.prod(s)) for s in self.input_shapes)

    @property
    def output_elements(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def out_channels(self) -> int:
        return int(self.output_shape[1]) if len(self.output_shape) > 1 else 1

    @property
    def in_channels(self) -> int:
        s = self.input_shapes[0] if self.input_shapes else ()
        return int(s[1]) if len(s) > 1 else 1


@dataclass
class GraphStats:
    layers: list[LayerStats]
    macs: int
    params: int
    weight_bytes: int              # bytes of those parameters as stored in the file
    unknown_ops: list[str]         # op types we cannot count, each once, in order of appearance
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    input_name: str = ""
    output_names: list[str] = field(default_factory=list)

    @property
    def zero_insertion_macs(self) -> int:
        return sum(l.zero_insertion_macs for l in self.layers)


def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have many types
        raise ModelError(f"{path}: not a valid ONNX model or corrupt ({exc})") from exc


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set_input_shape(model: onnx.ModelProto, shape: Sequence[int]) -> str:
    """Fix the first real graph input to ``shape``; return its name."""
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if not real:
        raise ModelError("the model has no input")
    inp = real[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ModelError(
            f"the model's input '{inp.name}' has {len(dims)} dimensions, "
            f"the requested shape {tuple(shape)} has {len(shape)}"
        )
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    return inp.name


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def analyse_model(model: str | Path | onnx.ModelProto,
                  input_shape: Sequence[int] = (1, 3, 256, 256)) -> GraphStats:
    """Count MACs, parameters and data movement of ``model`` at ``input_shape``."""
    proto = onnx.ModelProto()
    proto.CopyFrom(load_onnx(model))
    name = str(model) if not isinstance(model, onnx.ModelProto) else (proto.graph.name or "model")
    try:
        input_name = _set_input_shape(proto, input_shape)
    except ModelError as exc:
        raise ModelError(f"{name}: {exc}") from exc
    # Clear stale intermediate shapes: they were inferred at another input size.
    del proto.graph.value_info[:]
    for out in proto.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        proto = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise ModelError(f"{name}: shape inference failed at input {tuple(input_shape)} ({exc})") from exc

    g = proto.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            a = _attrs(node)
            if "value" in a:
                consts[node.output[0]] = numpy_helper.to_array(a["value"])
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        s = _shape_of(vi)
        if s is not None:
            shapes[vi.name] = s
    for k, v in consts.items():
        shapes.setdefault(k, tuple(v.shape))

    alias: dict[str, str] = {}

    def root(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    layers: list[LayerStats] = []
    unknown: list[str] = []
    params = 0
    param_bytes = 0

    for node in g.node:
        op = node.op_type
        ins = [t for t in node.input]
        if op in ALIAS_OPS:
            if ins and node.output:
                alias[node.output[0]] = ins[0]
                if root(ins[0]) in consts:  # DQ of a weight: the output is that weight
                    consts.setdefault(node.output[0], consts[root(ins[0])])
            continue
        if op in STRUCTURAL_OPS:
            continue
        if op not in KNOWN_OPS:
            if op not in unknown:
                unknown.append(op)
            continue
        out = node.output[0]
        oshape = shapes.get(out)
        if oshape is None:
            raise ModelError(f"{name}: no shape could be inferred for the output of {op} node "
                             f"'{node.name or out}' at input {tuple(input_shape)}")
        # constants feeding weight slots
        nparams = 0
        for slot in WEIGHT_SLOTS.get(op, ()):
            if slot < len(ins) and ins[slot] and root(ins[slot]) in consts:
                # counted per use: exporters merge identical initializers (e.g. two all-zero
                # biases) into one, yet each layer owns its parameters
                r = root(ins[slot])
                nparams += int(consts[r].size)
                param_bytes += int(consts[r].size) * consts[r].dtype.itemsize
        act_direct = [t for t in ins if t and root(t) not in consts]
        act_ins = [root(t) for t in act_direct]
        # the shape as this node sees it (after any Reshape/Flatten folded into the alias)
        act_shapes = [shapes.get(t) or shapes[root(t)] for t in act_direct
                      if t in shapes or root(t) in shapes]
        a = _attrs(node)
        oel = int(np.prod(oshape))
        kernel, stride, up = (1, 1), (1, 1), (1, 1)
        zi = 0
        in_per_group = 0
        if op == "Conv":
            w = consts.get(root(ins[1]))
            wshape = w.shape if w is not None else shapes[root(ins[1])]
            kh, kw = (int(wshape[2]), int(wshape[3])) if len(wshape) == 4 else (int(wshape[2]), 1)
            macs = oel * int(wshape[1]) * int(np.prod(wshape[2:]))
            in_per_group = int(wshape[1])
            dil = a.get("dilations", [1, 1])
            kernel = ((kh - 1) * dil[0] + 1, (kw - 1) * (dil[1] if len(dil) > 1 else 1) + 1)
            st = a.get("strides", [1, 1])
            stride = (int(st[0]), int(st[1]) if len(st) > 1 else 1)
            zi = macs
        elif op == "ConvTranspose":
            w = consts.get(root(ins[1]))
            wshape = w.shape if w is not None else shapes[root(ins[1])]
            group = int(a.get("group", 1))
            ishape = act_shapes[0]
            cin = int(wshape[0])
            cout_g = int(wshape[1])
            k = int(np.prod(wshape[2:]))
            macs = int(ishape[0]) * int(np.prod(ishape[2:])) * cin * cout_g * k
            zi = oel * (cin // group) * k
            in_per_group = cin // group
            dil = a.get("dilations", [1] * (len(wshape) - 2))
            kernel = ((int(wshape[2]) - 1) * dil[0] + 1,
                      ((int(wshape[3]) - 1) * dil[1] + 1) if len(wshape) > 3 else 1)
            st = a.get("strides", [1, 1])
            up = (int(st[0]), int(st[1]) if len(st) > 1 else 1)
        elif op == "Gemm":
            sa = shapes.get(ins[0]) or shapes[root(ins[0])]
            sb = shapes.get(ins[1]) or shapes[root(ins[1])]
            m = sa[1] if a.get("transA", 0) else sa[0]
            kk = sa[0] if a.get("transA", 0) else sa[1]
            n = sb[0] if a.get("transB", 0) else sb[1]
            macs = int(m) * int(kk) * int(n)
            zi = macs
            in_per_group = int(kk)
        elif op == "MatMul":
            kk = (shapes.get(ins[0]) or shapes[root(ins[0])])[-1]
            macs = oel * int(kk)  # every output element is a K-long dot product
            zi = macs
            in_per_group = int(kk)
        elif op in ELEMENTWISE_MAC_OPS:
            macs = oel
        elif op in ELEMENTWISE_FREE_OPS or op in ACTIVATION_OPS or op in MOVE_OPS:
            macs = 0
            if op == "DepthToSpace":
                b = int(a["blocksize"])
                up = (b, b)
            elif op == "SpaceToDepth":
                b = int(a["blocksize"])
                stride = (b, b)
        elif op in POOL_OPS:
            if op == "AveragePool":
                ks = a["kernel_shape"]
                macs = oel * int(np.prod(ks))
            elif op == "GlobalAveragePool":
                macs = int(np.prod(act_shapes[0]))
            else:
                macs = 0
            if "kernel_shape" in a:
                ks = a["kernel_shape"]
                kernel = (int(ks[0]), int(ks[1]) if len(ks) > 1 else 1)
                st = a.get("strides", [1, 1])
                stride = (int(st[0]), int(st[1]) if len(st) > 1 else 1)
        elif op in ("Resize", "Upsample"):
            ishape = act_shapes[0]
            axes = sum(1 for i, o in zip(ishape, oshape) if i != o)
            mode = a.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            taps = {"nearest": 0, "linear": 2, "cubic": 4}.get(mode, 0)
            macs = oel * (taps ** axes) if taps else 0
            if len(ishape) == 4:
                up = (max(1, oshape[2] // max(1, ishape[2])), max(1, oshape[3] // max(1, ishape[3])))
        else:  # pragma: no cover - KNOWN_OPS and the branches above agree
            raise AssertionError(op)
        if not zi:
            zi = macs
        layer = LayerStats(
            name=node.name or out, op_type=op, macs=int(macs), params=nparams, inputs=act_ins,
            output=out, input_shapes=act_shapes, output_shape=tuple(oshape), kernel=kernel,
            stride=stride, upsample=up, zero_insertion_macs=int(zi),
            in_per_group=in_per_group,
        )
        layers.append(layer)
        params += nparams

    macs = sum(l.macs for l in layers)
    out_names = [root(o.name) for o in g.output]
    return GraphStats(
        layers=layers, macs=int(macs), params=int(params), weight_bytes=int(param_bytes),
        unknown_ops=unknown, input_shape=tuple(int(v) for v in input_shape),
        output_shape=shapes.get(g.output[0].name, ()), input_name=input_name,
        output_names=out_names,
    )


def human(n: float, unit: str = "") -> str:
    """3 significant figures with an SI prefix: 8.53 G, 13.5 K."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g} {p}{unit}"
    return f"{n:.3g} {unit}".rstrip()

