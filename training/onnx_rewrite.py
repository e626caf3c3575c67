"""Exactly-equivalent ONNX graph rewrites that let ONNX Runtime's INT8 CPU kernels run a pixel-(un)shuffle
network without layout round trips (used by training/export_cfrnet.py for the INT8 file).

Why (profile of the CFRNet INT8 cycle at one thread, benchmarks/bench_cfrnet_cpu.py --profile 20):
ONNX Runtime runs every QLinearConv channels-last (NHWC) and puts a Transpose on each side of any
operator it cannot run channels-last. SpaceToDepth and DepthToSpace are such operators, and its
DepthToSpace kernel is itself slow (~1 ns per byte), so the shuffles, their transposes and the float
round trips (SpaceToDepth ran in float between a DequantizeLinear and a QuantizeLinear) cost ~16 % of
the cycle. The rewrites, each bit-for-bit the same function in FP32:

- ``fold_space_to_depth``: SpaceToDepth(b) → Conv(k×k, stride 1, pad p) is one Conv(bk×bk, stride b,
  pad bp) on the full-resolution input, with the same weights rearranged and the same MAC count.
- ``depth_to_space_channels_last``: Conv → DepthToSpace(b) becomes Conv (output channels permuted to
  block-major order) → Transpose to NHWC → Reshape → one single-axis Transpose → Reshape → Transpose
  to NCHW. The outer transposes cancel against the ones ONNX Runtime inserts around its NHWC
  convolutions, so the whole decoder stays channels-last and the shuffle is one fast transpose.
  Convolutions with fewer than ``min_out`` (16) outputs are padded with zero filters (then sliced
  off): ONNX Runtime's fast symmetric INT8 convolution needs ≥ 16 output channels.
- ``space_to_depth_in_uint8`` (on the quantised QDQ graph): DQ → SpaceToDepth → Q → DQ becomes
  SpaceToDepth on the uint8 tensor → DQ with the input's scale (a permutation needs no requantising).

Only standard ONNX operators are used (Conv, Transpose, Reshape, Slice, SpaceToDepth), which the NPU
simulator (app.core.npu) counts like the originals: the MACs are unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["fold_space_to_depth", "depth_to_space_channels_last", "space_to_depth_in_uint8",
           "rewrite_for_int8"]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _drop_value_info(graph: onnx.GraphProto, names: set[str]) -> None:
    keep = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _is_plain_conv(conv: onnx.NodeProto, inits: dict) -> bool:
    a = _attrs(conv)
    return (conv.input[1] in inits and a.get("group", 1) == 1
            and list(a.get("strides", [1, 1])) == [1, 1] and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def fold_space_to_depth(model: onnx.ModelProto, min_channels: int = 16) -> int:
    """SpaceToDepth → Conv ⇒ one strided Conv, where the SpaceToDepth feeds only that Conv and its
    input has at least ``min_channels`` channels (on a 3-channel image the strided kernel is slower
    than the shuffle). Returns how many were folded; ``model`` is changed in place."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    cons = _consumers(g)
    outputs = {o.name for o in g.output}
    folded = []
    for s2d in g.node:
        if s2d.op_type != "SpaceToDepth" or s2d.output[0] in outputs:
            continue
        users = cons.get(s2d.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != s2d.output[0]:
            continue
        conv = users[0]
        if not _is_plain_conv(conv, inits):
            continue
        b = _attrs(s2d)["blocksize"]
        w = numpy_helper.to_array(inits[conv.input[1]])
        co, cb, kh, kw = w.shape
        c = cb // (b * b)
        if c < min_channels:
            continue
        # SpaceToDepth channel (i*b + j)*c + ch holds pixel (b*y + i, b*x + j) of channel ch, so
        # tap (ky, kx) of that channel is tap (b*ky + i, b*kx + j) of the full-resolution kernel.
        wf = w.reshape(co, b, b, c, kh, kw).transpose(0, 3, 4, 1, 5, 2).reshape(co, c, kh * b, kw * b)
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(wf), conv.input[1]))
        pads = list(_attrs(conv).get("pads", [0, 0, 0, 0]))
        conv.input[0] = s2d.input[0]
        del conv.attribute[:]
        conv.attribute.extend([
            helper.make_attribute("kernel_shape", [kh * b, kw * b]),
            helper.make_attribute("strides", [b, b]),
            helper.make_attribute("pads", [p * b for p in pads]),
            helper.make_attribute("dilations", [1, 1]),
            helper.make_attribute("group", 1),
        ])
        folded.append(s2d)
    for n in folded:
        g.node.remove(n)
    _drop_value_info(g, {n.output[0] for n in folded})
    return len(folded)


def depth_to_space_channels_last(model: onnx.ModelProto, min_out: int = 16) -> int:
    """Conv → DepthToSpace ⇒ Conv (block-major channels) → channels-last shuffle (see the module
    docstring). Needs the DepthToSpace input's H and W (run shape inference first). Returns how many
    were rewritten; ``model`` is changed in place."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    prod, cons = _producers(g), _consumers(g)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.value_info}
    new_nodes, done = [], 0
    for n in g.node:
        conv = prod.get(n.input[0]) if n.op_type == "DepthToSpace" else None
        shape = shapes.get(n.input[0], []) if conv is not None else []
        if (conv is None or conv.op_type != "Conv" or len(cons[conv.output[0]]) != 1
                or len(conv.input) < 3 or conv.input[1] not in inits or conv.input[2] not in inits
                or len(shape) != 4 or not all(shape[2:])):
            new_nodes.append(n)
            continue
        a = _attrs(n)
        b = a["blocksize"]
        mode = a.get("mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        w = numpy_helper.to_array(inits[conv.input[1]])
        bias = numpy_helper.to_array(inits[conv.input[2]])
        c = w.shape[0] // (b * b)
        cp = c if b * b * c >= min_out else -(-min_out // (b * b))  # padded channels per block
        wn = np.zeros((b * b * cp,) + w.shape[1:], w.dtype)
        bn = np.zeros(b * b * cp, bias.dtype)
        for i in range(b):
            for j in range(b):
                for ch in range(c):
                    old = ch * b * b + i * b + j if mode == "CRD" else (i * b + j) * c + ch
                    wn[(i * b + j) * cp + ch] = w[old]
                    bn[(i * b + j) * cp + ch] = bias[old]
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(wn, conv.input[1]))
        inits[conv.input[2]].CopyFrom(numpy_helper.from_array(bn, conv.input[2]))
        h, wd = shape[2], shape[3]
        name, out = n.name or f"DepthToSpace_{done}", n.output[0]
        rows, full = f"{name}/rows_shape", f"{name}/out_shape"
        g.initializer.extend([
            numpy_helper.from_array(np.array([-1, wd, b, b * cp], np.int64), rows),   # [N·H, W, i, (j, c)]
            numpy_helper.from_array(np.array([-1, h * b, wd * b, cp], np.int64), full),
        ])
        new_nodes += [
            helper.make_node("Transpose", [n.input[0]], [f"{out}/nhwc"], perm=[0, 2, 3, 1], name=f"{name}/to_nhwc"),
            helper.make_node("Reshape", [f"{out}/nhwc", rows], [f"{out}/rows"], name=f"{name}/rows"),
            # [N·H, W, i, (j, c)] → [N·H, i, W, (j, c)]: row b*y + i, column b*x + j
            helper.make_node("Transpose", [f"{out}/rows"], [f"{out}/shuffled"], perm=[0, 2, 1, 3], name=f"{name}/shuffle"),
            helper.make_node("Reshape", [f"{out}/shuffled", full], [f"{out}/full"], name=f"{name}/full"),
        ]
        if cp == c:
            new_nodes.append(helper.make_node("Transpose", [f"{out}/full"], [out], perm=[0, 3, 1, 2], name=f"{name}/to_nchw"))
        else:  # drop the zero channels after going back to NCHW, where the slice is one contiguous copy
            lim = [f"{name}/slice_{k}" for k in ("start", "end", "axis")]
            g.initializer.extend([numpy_helper.from_array(np.array([v], np.int64), nm) for v, nm in zip((0, c, 1), lim)])
            new_nodes += [
                helper.make_node("Transpose", [f"{out}/full"], [f"{out}/padded"], perm=[0, 3, 1, 2], name=f"{name}/to_nchw"),
                helper.make_node("Slice", [f"{out}/padded", *lim], [out], name=f"{name}/slice"),
            ]
        _drop_value_info(g, {conv.output[0]})
        done += 1
    del g.node[:]
    g.node.extend(new_nodes)
    return done


def space_to_depth_in_uint8(model: onnx.ModelProto) -> int:
    """On a QDQ graph: DQ(a) → SpaceToDepth → Q(b) → DQ(b)… ⇒ SpaceToDepth on the quantised tensor
    → DQ with a's scale and zero point. Exact: the permutation changes no value, and ``a`` already
    carries the quantisation. Returns how many were rewritten; ``model`` is changed in place."""
    g = model.graph
    prod, cons = _producers(g), _consumers(g)
    drop = []
    for s2d in g.node:
        if s2d.op_type != "SpaceToDepth":
            continue
        dq = prod.get(s2d.input[0])
        users = cons.get(s2d.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q = users[0]
        dqs = cons.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs) or len(dq.input) < 3:
            continue
        s2d.input[0] = dq.input[0]
        s2d.output[0] = q.output[0]
        for d in dqs:
            d.input[1], d.input[2] = dq.input[1], dq.input[2]
        drop.append(q)
        if len(cons[dq.output[0]]) == 1:
            drop.append(dq)
    for n in drop:
        g.node.remove(n)
    _drop_unused_initializers(g)
    return sum(1 for n in drop if n.op_type == "QuantizeLinear")


def rewrite_for_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 rewrites, in order, on a copy of ``model`` (to quantise afterwards)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    fold_space_to_depth(m)
    m = onnx.shape_inference.infer_shapes(m)
    depth_to_space_channels_last(m)
    return m
