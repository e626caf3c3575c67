"""Reference networks rebuilt from their papers with onnx.helper (random weights): the graphs the
NPU profiles are calibrated on, and the stand-in CFRNet for the CPU benchmark when no trained
model is present. Only the structure matters for counting and timing; the weights are seeded
He-initialised so that the stand-in also runs sensibly (activations neither vanish nor explode).

- ``cfrnet_paper()``: the CFRNet paper's network as DESIGN §10 describes it — a ResNet-style CNN
  of ~2.09 M parameters, space-to-depth to a 1/4-resolution trunk of 27 residual blocks at 64
  channels (two 3×3 convs, ReLU between), a trunk-end conv and long skip, a 3×3 conv to 48
  channels and depth-to-space back to 256², plus the input (global residual): ~8.5 GMAC a cycle.
- ``fsrcnn(scale=2)``: FSRCNN(d=56, s=12, m=4): 5×5 1→d, 1×1 d→s, m× 3×3 s→s, 1×1 s→d (PReLU after
  each), 9×9 transposed conv d→1 with stride = scale.
- ``sesr(m=5, f=16, scale=2)``: collapsed SESR as in ARM-software/sesr models/sesr.py at inference:
  5×5 1→f, m× (3×3 f→f + PReLU), long residual over the body, 5×5 f→scale², + the input
  (broadcast over the scale² channels), depth-to-space (twice for ×4, each 2×).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["cfrnet_paper", "fsrcnn", "sesr", "OPSET"]

OPSET = 17


class _Builder:
    def __init__(self, seed: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, arr: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, gain: float = 1.0,
             bias: bool = True) -> str:
        std = gain * np.sqrt(2.0 / (cin * k * k))
        w = self.const((self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32), "w")
        ins = [x, w]
        if bias:
            ins.append(self.const(np.zeros(cout, np.float32), "b"))
        y = self._name("conv")
        p = (k - 1) // 2
        self.nodes.append(helper.make_node("Conv", ins, [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[p, p, p, p]))
        return y

    def deconv(self, x: str, cin: int, cout: int, k: int, stride: int) -> str:
        std = np.sqrt(1.0 / (cin * k * k / stride ** 2))
        w = self.const((self.rng.standard_normal((cin, cout, k, k)) * std).astype(np.float32), "w")
        b = self.const(np.zeros(cout, np.float32), "b")
        y = self._name("deconv")
        p = (k - 1) // 2  # 9×9, stride 2, pads 4 + output_padding 1 → exactly 2× the input
        self.nodes.append(helper.make_node(
            "ConvTranspose", [x, w, b], [y], name=y, kernel_shape=[k, k], strides=[stride, stride],
            pads=[p, p, p, p], output_padding=[stride - 1, stride - 1]))
        return y

    def op(self, op: str, ins: list[str], **attrs) -> str:
        y = self._name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [y], name=y, **attrs))
        return y

    def prelu(self, x: str, c: int) -> str:
        slope = self.const(np.full((c, 1, 1), 0.25, np.float32), "slope")
        return self.op("PRelu", [x, slope])

    def model(self, x: str, y: str, cin: int, cout: int, name: str,
              in_hw=("H", "W"), out_hw=("sH", "sW")) -> onnx.ModelProto:
        out = self.op("Identity", [y])
        self.nodes[-1].output[0] = "output"
        del out
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", cin, *in_hw])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", cout, *out_hw])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cfr-studio reference")
        m.ir_version = 8
        return m


def cfrnet_paper(blocks: int = 27, channels: int = 64, seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = "input"
    s2d = b.op("SpaceToDepth", [x], blocksize=4)                      # 48 × 64²
    head = b.conv(s2d, 48, channels, 3)
    h = head
    for _ in range(blocks):
        r = b.op("Relu", [b.conv(h, channels, channels, 3)])
        r = b.conv(r, channels, channels, 3, gain=0.1)                # small residual branch
        h = b.op("Add", [h, r])
    h = b.op("Add", [b.conv(h, channels, channels, 3, gain=0.5), head])
    t = b.conv(h, channels, 48, 3, gain=0.1)
    up = b.op("DepthToSpace", [t], blocksize=4, mode="DCR")           # 3 × 256²
    y = b.op("Add", [up, x])
    lo = b.const(np.array(0.0, np.float32))
    hi = b.const(np.array(1.0, np.float32))
    y = b.op("Clip", [y, lo, hi])
    return b.model(x, y, 3, 3, "cfrnet_paper_reconstruction", out_hw=("H", "W"))


def fsrcnn(scale: int = 2, d: int = 56, s: int = 12, m: int = 4, seed: int = 0) -> onnx.ModelProto:
    b = _Builder(seed)
    x = "input"
    h = b.prelu(b.conv(x, 1, d, 5), d)
    h = b.prelu(b.conv(h, d, s, 1), s)
    for _ in range(m):
        h = b.prelu(b.conv(h, s, s, 3), s)
    h = b.prelu(b.conv(h, s, d, 1), d)
    y = b.deconv(h, d, 1, 9, scale)
    return b.model(x, y, 1, 1, f"fsrcnn_x{scale}")


def sesr(m: int = 5, f: int = 16, scale: int = 2, seed: int = 0) -> onnx.ModelProto:
    if scale not in (2, 4):
        raise ValueError("SESR is built for ×2 and ×4")
    b = _Builder(seed)
    x = "input"
    centred = b.op("Sub", [x, b.const(np.array(0.5, np.float32))])
    f0 = b.conv(centred, 1, f, 5, bias=False)
    h = f0
    for _ in range(m):
        h = b.prelu(b.conv(h, f, f, 3, bias=False), f)
    h = b.op("Add", [h, f0])                                          # long residual over the body
    o = b.conv(h, f, scale * scale, 5, bias=False, gain=0.1)
    o = b.op("Add", [o, x])                                           # input broadcast over s² chans
    for _ in range(2 if scale == 4 else 1):
        o = b.op("DepthToSpace", [o], blocksize=2, mode="DCR")
    return b.model(x, o, 1, 1, f"sesr_m{m}_x{scale}")
