"""training/onnx_rewrite.py: each rewrite computes exactly what the graph computed before (real ONNX
Runtime sessions on tiny graphs built here), and leaves the operators the rewrite is for."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.core.onnx_session import OnnxModel
from training.onnx_rewrite import (
    depth_to_space_channels_last,
    fold_space_to_depth,
    rewrite_for_int8,
    space_to_depth_in_uint8,
)


def _model(nodes, inits, c_in=8, hw=16, dyn_batch=True):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N" if dyn_batch else 1, c_in, hw, hw])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "t", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def _run(model, x, tmp_path, name):
    p = tmp_path / f"{name}.onnx"
    onnx.save(model, p)
    return OnnxModel(p, threads=1).run1(x)


def _unet_like(c_in=16, mode="CRD", c_up=3):
    """input → SpaceToDepth → Conv 3×3 → ReLU → Conv 3×3 (4·c_up) → DepthToSpace → + input[:c_up]
    (the first c_up input channels; the whole input where c_up == c_in)"""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.1, (24, 4 * c_in, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 24).astype(np.float32),
        "w2": rng.normal(0, 0.1, (4 * c_up, 24, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 4 * c_up).astype(np.float32),
        "st": np.array([0], np.int64), "en": np.array([c_up], np.int64), "ax": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("SpaceToDepth", ["input"], ["s"], blocksize=2, name="down"),
        helper.make_node("Conv", ["s", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("DepthToSpace", ["c2"], ["u"], blocksize=2, mode=mode, name="up"),
        helper.make_node("Slice", ["input", "st", "en", "ax"], ["skip"]),
        helper.make_node("Add", ["u", "skip"], ["output"]),
    ]
    if c_up == c_in:  # CFRNet's global residual: the input itself is added (and so quantised)
        nodes = nodes[:-2] + [helper.make_node("Add", ["u", "input"], ["output"])]
    return _model(nodes, inits, c_in=c_in)


@pytest.mark.parametrize("mode,c_up", [("CRD", 3), ("DCR", 3), ("CRD", 8)])
def test_fp32_rewrites_are_exact(tmp_path, mode, c_up):
    m = _unet_like(mode=mode, c_up=c_up)
    x = np.random.default_rng(1).random((2, 16, 16, 16), dtype=np.float32)
    ref = _run(m, x, tmp_path, "ref")
    r = rewrite_for_int8(m)
    ops = [n.op_type for n in r.graph.node]
    assert "SpaceToDepth" not in ops and "DepthToSpace" not in ops
    conv1 = next(n for n in r.graph.node if n.name == "conv1")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv1.attribute}
    assert attrs["kernel_shape"] == [6, 6] and attrs["strides"] == [2, 2] and attrs["pads"] == [2, 2, 2, 2]
    w2 = next(t for t in r.graph.initializer if t.name == "w2")
    assert w2.dims[0] == (16 if 4 * c_up < 16 else 4 * c_up)   # padded to ≥ 16 filters when fewer
    out = _run(r, x, tmp_path, "rewritten")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_fold_skips_thin_inputs_and_shared_outputs(tmp_path):
    m = _unet_like(c_in=3)          # a 3-channel image: the shuffle is cheaper than a 6×6 kernel
    assert fold_space_to_depth(m) == 0
    m = _unet_like(c_in=16)
    m.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))  # used twice
    assert fold_space_to_depth(m) == 0


def test_depth_to_space_needs_known_spatial_size():
    m = _unet_like()
    del m.graph.value_info[:]      # no shapes: leave the graph alone rather than guess
    assert depth_to_space_channels_last(m) == 0
    assert "DepthToSpace" in [n.op_type for n in m.graph.node]


def test_space_to_depth_in_uint8_is_exact_on_a_quantised_graph(tmp_path):
    from training.onnx_export import quantize_int8

    m = _unet_like(c_in=3, c_up=3)   # the unshuffle of a 3-channel input stays, between DQ and Q
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(m, fp32)
    rng = np.random.default_rng(2)
    calib = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(4)]
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", calib, {"name": "t"})
    q = onnx.load(int8)
    x = rng.random((1, 3, 16, 16), dtype=np.float32)
    before = _run(q, x, tmp_path, "q_before")
    assert space_to_depth_in_uint8(q) == 1
    s2d = next(n for n in q.graph.node if n.op_type == "SpaceToDepth")
    producer = next(n for n in q.graph.node if s2d.input[0] in n.output)
    assert producer.op_type == "QuantizeLinear"     # it now reads the uint8 tensor
    after = _run(q, x, tmp_path, "q_after")
    np.testing.assert_array_equal(after, before)
