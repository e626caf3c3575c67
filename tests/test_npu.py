"""The NPU simulator: exact MAC counts on graphs built here (shapes checked by a real ONNX Runtime
session), QDQ folding, the roofline's behaviour, the calibration against the published figures
(DESIGN §5) on reconstructions of FSRCNN, SESR-M5 and the CFRNet paper's network, and the
device-report command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.cli import main as cli_main
from app.core.errors import CfrError
from app.core.npu import analyse_model, list_profiles, load_profile, simulate
from app.core.npu.reference import cfrnet_paper, fsrcnn, sesr
from app.core.npu.roofline import receptive_halo
from app.core.onnx_session import OnnxModel

ROOT = Path(__file__).resolve().parents[1]
HD = (1, 1, 1080, 1920)
RNG = np.random.default_rng(0)


def one_node_model(op, x_shape, inits=(), out_name="y", extra_inputs=(), **attrs):
    """A graph of one node: input 'x' (+ constant initializers) → 'y'."""
    init_protos = [numpy_helper.from_array(np.asarray(a), n) for n, a in inits]
    node = helper.make_node(op, ["x", *[n for n, _ in inits], *extra_inputs], [out_name], **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], init_protos)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def ort_output_shape(model, x_shape, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = RNG.random(x_shape, dtype=np.float32)
    return OnnxModel(path, threads=1).run1(x).shape


def w(*shape):
    return (RNG.standard_normal(shape) * 0.1).astype(np.float32)


# ---------------------------------------------------------------- MAC counts, by hand ----------

def test_conv_grouped_strided_dilated_asymmetric_padding(tmp_path):
    x = (2, 8, 17, 19)
    m = one_node_model("Conv", x, [("w", w(6, 4, 3, 3)), ("b", w(6))], group=2, strides=[2, 2],
                       dilations=[2, 2], pads=[1, 2, 0, 1])
    ho = (17 + 1 + 0 - (2 * 2 + 1)) // 2 + 1   # 7
    wo = (19 + 2 + 1 - (2 * 2 + 1)) // 2 + 1   # 9
    assert ort_output_shape(m, x, tmp_path) == (2, 6, ho, wo)
    s = analyse_model(m, x)
    assert s.macs == 2 * 6 * ho * wo * 4 * 3 * 3
    assert s.params == 6 * 4 * 9 + 6
    assert s.layers[0].kernel == (5, 5) and s.layers[0].stride == (2, 2)
    assert s.unknown_ops == []


def test_depthwise_conv_and_input_size_override(tmp_path):
    m = one_node_model("Conv", ("N", 16, "H", "W"), [("w", w(16, 1, 5, 5))], group=16,
                       pads=[2, 2, 2, 2])
    s = analyse_model(m, (1, 16, 40, 30))
    assert s.macs == 16 * 40 * 30 * 25
    assert analyse_model(m, (1, 16, 80, 60)).macs == 4 * s.macs  # shapes follow the request


def test_conv_transpose_scatter_and_zero_insertion_counts(tmp_path):
    x = (1, 4, 10, 12)
    m = one_node_model("ConvTranspose", x, [("w", w(4, 3, 3, 3))], group=2, strides=[2, 2],
                       pads=[1, 1, 1, 1], output_padding=[1, 1])
    shape = ort_output_shape(m, x, tmp_path)
    assert shape == (1, 6, 20, 24)
    s = analyse_model(m, x)
    # each of the 4·10·12 input values meets a 3×3 window on Cout/g = 3 outputs
    assert s.macs == 4 * 10 * 12 * 3 * 9
    # as zero insertion + conv: every output pixel, Cin/g = 2 inputs, 3×3
    assert s.layers[0].zero_insertion_macs == 6 * 20 * 24 * 2 * 9


def test_gemm_and_batched_matmul(tmp_path):
    m = one_node_model("Gemm", (5, 32), [("b", w(10, 32)), ("c", w(10))], transB=1)
    assert ort_output_shape(m, (5, 32), tmp_path) == (5, 10)
    s = analyse_model(m, (5, 32))
    assert s.macs == 5 * 32 * 10 and s.params == 330
    m = one_node_model("MatMul", (3, 7, 16), [("b", w(16, 9))])
    assert ort_output_shape(m, (3, 7, 16), tmp_path) == (3, 7, 9)
    assert analyse_model(m, (3, 7, 16)).macs == 3 * 7 * 16 * 9


def test_flatten_then_gemm_uses_the_flattened_shape(tmp_path):
    x = (2, 8, 3, 3)
    flat = helper.make_node("Flatten", ["x"], ["f"], axis=1)
    gemm = helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)
    graph = helper.make_graph(
        [flat, gemm], "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w(10, 72), "w"), numpy_helper.from_array(w(10), "b")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    assert ort_output_shape(m, x, tmp_path) == (2, 10)
    s = analyse_model(m, x)
    assert s.macs == 2 * 72 * 10 and s.params == 730 and len(s.layers) == 1


def test_a_merged_initializer_counts_for_each_layer_that_uses_it():
    # exporters merge identical constants (two all-zero biases) into one initializer
    c1 = helper.make_node("Conv", ["x", "w1", "zero"], ["h"], kernel_shape=[1, 1])
    c2 = helper.make_node("Conv", ["h", "w2", "zero"], ["y"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [c1, c2], "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w(4, 4, 1, 1), "w1"), numpy_helper.from_array(w(4, 4, 1, 1), "w2"),
         numpy_helper.from_array(np.zeros(4, np.float32), "zero")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    s = analyse_model(m, (1, 4, 8, 8))
    assert s.params == 2 * (16 + 4) and s.weight_bytes == 4 * s.params


@pytest.mark.parametrize("op, inits, attrs, per_element", [
    ("Add", [("c", w(1, 8, 1, 1))], {}, 1),
    ("Mul", [("c", w(8, 1, 1))], {}, 1),
    ("PRelu", [("slope", w(8, 1, 1))], {}, 1),
    ("Relu", [], {}, 0),
    ("Clip", [("lo", np.array(0, np.float32)), ("hi", np.array(1, np.float32))], {}, 0),
])
def test_elementwise(op, inits, attrs, per_element, tmp_path):
    x = (2, 8, 6, 5)
    m = one_node_model(op, x, inits, **attrs)
    assert ort_output_shape(m, x, tmp_path) == x
    s = analyse_model(m, x)
    assert s.macs == per_element * 2 * 8 * 6 * 5
    assert s.unknown_ops == []


def test_data_movement_ops_cost_no_macs(tmp_path):
    for op, x, out in [("DepthToSpace", (1, 16, 5, 7), (1, 4, 10, 14)),
                       ("SpaceToDepth", (1, 3, 8, 12), (1, 12, 4, 6))]:
        m = one_node_model(op, x, blocksize=2)
        assert ort_output_shape(m, x, tmp_path) == out
        s = analyse_model(m, x)
        assert s.macs == 0 and s.layers[0].output_shape == out
    m = one_node_model("Concat", (1, 3, 4, 4), [("c", w(1, 5, 4, 4))], axis=1)
    s = analyse_model(m, (1, 3, 4, 4))
    assert s.macs == 0 and s.layers[0].output_shape == (1, 8, 4, 4)


def test_resize_and_pooling(tmp_path):
    x = (1, 4, 6, 8)
    scales = ("scales", np.array([1, 1, 2, 2], np.float32))
    lin = one_node_model("Resize", x, [("roi", np.array([], np.float32)), scales], mode="linear")
    assert ort_output_shape(lin, x, tmp_path) == (1, 4, 12, 16)
    assert analyse_model(lin, x).macs == 4 * 12 * 16 * 4          # 2 taps × 2 axes
    near = one_node_model("Resize", x, [("roi", np.array([], np.float32)), scales], mode="nearest")
    assert analyse_model(near, x).macs == 0
    avg = one_node_model("AveragePool", x, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    assert ort_output_shape(avg, x, tmp_path) == x
    assert analyse_model(avg, x).macs == 4 * 6 * 8 * 9
    mx = one_node_model("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    s = analyse_model(mx, x)
    assert s.macs == 0 and s.layers[0].output_shape == (1, 4, 3, 4)
    assert analyse_model(one_node_model("GlobalAveragePool", x), x).macs == 4 * 6 * 8


def test_unknown_operators_are_reported_by_name():
    m = one_node_model("Softmax", (1, 10), axis=1)
    s = analyse_model(m, (1, 10))
    assert s.unknown_ops == ["Softmax"]
    sim = simulate(m, "ethos-n78", (1, 10))
    assert sim.unknown_ops == ["Softmax"]


def test_qdq_int8_model_counts_like_fp32(tmp_path):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    fp32 = tmp_path / "sesr_fp32.onnx"
    int8 = tmp_path / "sesr_int8.onnx"
    onnx.save(sesr(), fp32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": RNG.random((1, 1, 24, 24), dtype=np.float32)}
                               for _ in range(2)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, reduce_range=True)
    q = onnx.load(int8)
    assert any(n.op_type == "DequantizeLinear" for n in q.graph.node)
    a, b = analyse_model(fp32, (1, 1, 64, 96)), analyse_model(int8, (1, 1, 64, 96))
    assert b.unknown_ops == []
    assert b.macs == a.macs and b.params == a.params
    assert [l.op_type for l in b.layers] == [l.op_type for l in a.layers]
    assert b.weight_bytes < a.weight_bytes  # int8 weights take a quarter of the bytes
    ta = simulate(fp32, "ethos-n78", (1, 1, 64, 96)).per_inference_ms
    tb = simulate(int8, "ethos-n78", (1, 1, 64, 96)).per_inference_ms
    assert tb == pytest.approx(ta, rel=1e-9)  # QDQ folded away: the same NPU work


# ---------------------------------------------------------------- reference networks ----------

def test_reference_networks_count_as_their_papers():
    px = 1080 * 1920
    s = analyse_model(fsrcnn(), HD)
    lr = 5 * 5 * 56 + 56 * 12 + 4 * 9 * 12 * 12 + 12 * 56     # per LR pixel
    prelu = (56 + 12 + 4 * 12 + 56)                             # one MAC per element
    assert s.macs == px * (lr + prelu + 56 * 81)                # deconv: 56·9·9 per LR pixel
    # the SESR paper's 54 GMAC: the transposed conv counted per 4K output pixel
    assert s.zero_insertion_macs == px * (lr + prelu) + 4 * px * 56 * 81
    assert s.zero_insertion_macs == pytest.approx(54e9, rel=0.01)
    s2 = analyse_model(sesr(), HD)
    convs = 25 * 16 + 5 * 9 * 16 * 16 + 25 * 16 * 4
    assert convs == 13520                                       # SESR-M5 ×2: 13.52 K parameters
    assert s2.params == convs + 5 * 16 + 1                      # + PReLU slopes + the 0.5 offset
    assert s2.macs == px * (1 + convs + 5 * 16 + 16 + 4)        # centre, convs, PReLU, 2 adds
    assert s2.macs == pytest.approx(28e9, rel=0.01)
    assert receptive_halo(s2) == (2 + 5 + 2, 2 + 5 + 2)
    c = analyse_model(cfrnet_paper(), (1, 3, 256, 256))
    conv = 64 * 64 * 9
    assert c.params == 48 * 64 * 9 + 64 + 55 * (conv + 64) + 64 * 48 * 9 + 48  # Clip bounds: no
    assert c.macs / 1e9 == pytest.approx(8.5, rel=0.01)
    assert c.params / 1e6 == pytest.approx(2.09, rel=0.01)


# ---------------------------------------------------------------- roofline behaviour ----------

def test_roofline_compute_bound_matches_hand_formula():
    p = load_profile("ethos-n78").replace(dram_gb_per_s=1e9, parallel_out=1, parallel_in=1)
    m = one_node_model("Conv", (1, 32, 64, 64), [("w", w(32, 32, 3, 3))], pads=[1, 1, 1, 1])
    sim = simulate(m, p, (1, 32, 64, 64))
    macs = 32 * 64 * 64 * 32 * 9
    expect = macs / (p.peak_macs_per_s * p.utilisation) * 1e3 + p.layer_overhead_us / 1e3 \
        + p.inference_overhead_us / 1e3
    assert sim.per_inference_ms == pytest.approx(expect, rel=1e-9)
    assert sim.layers[0].bound == "compute"


def test_small_buffer_spills_to_dram_and_splits_wide_layers():
    m = sesr()
    big = load_profile("ethos-n78").replace(sram_kib=64 * 1024)
    small = load_profile("ethos-n78").replace(sram_kib=24)
    a, b = simulate(m, big, (1, 1, 90, 1920)), simulate(m, small, (1, 1, 90, 1920))
    assert b.dram_bytes > a.dram_bytes
    assert max(l.section for l in b.layers) > max(l.section for l in a.layers)
    assert any(l.column_tiles > 1 for l in b.layers)  # a 1920-wide 16-channel row set > 24 KiB
    assert b.per_inference_ms > a.per_inference_ms


def test_tiles_carry_their_halo():
    t = simulate(sesr(), "ethos-n78", HD, tile=(300, 400))
    assert t.tiles == pytest.approx(17.28)                  # 4.8 × 3.6 tiles of 400×300
    assert t.tile_shape == (1, 1, 318, 418)
    full = simulate(sesr(), "ethos-n78", HD)
    assert t.macs == full.macs == analyse_model(sesr(), HD).macs
    assert t.executed_macs / full.executed_macs == pytest.approx(318 * 418 / (300 * 400), rel=1e-6)


# ---------------------------------------------------------------- calibration (DESIGN §5) -----

def within(value, target, tol=0.10):
    return abs(value / target - 1) <= tol


def test_profiles_are_documented_data():
    assert {"hi3402", "ethos-n78"} <= set(list_profiles())
    for name in ("hi3402", "ethos-n78"):
        p = load_profile(name)
        assert p.sources and p.assumptions and p.calibration
        assert p.path.suffix == ".json"
    with pytest.raises(CfrError, match="no such NPU profile"):
        load_profile("tpu-9000")


def test_ethos_n78_calibration_fsrcnn_and_sesr():
    f = simulate(fsrcnn(), "ethos-n78", HD)
    assert within(f.ideal_fps, 37)            # 54 GMAC at 100 % of 4 TOP/s
    assert within(f.fps, 6)                   # but ≈ 6 FPS simulated ...
    assert f.layers[-1].op_type == "ConvTranspose" and f.layers[-1].bound == "memory"  # ... bandwidth
    s = simulate(sesr(), "ethos-n78", HD)
    assert within(f.per_inference_ms / s.per_inference_ms, 6.15)
    t = simulate(sesr(), "ethos-n78", HD, tile=(300, 400))
    assert within(t.per_inference_ms, 21.77)
    assert within(t.fps, 46)
    s4 = simulate(sesr(scale=4), "ethos-n78", HD)
    assert within(s4.fps, 22)
    t4 = simulate(sesr(scale=4), "ethos-n78", HD, tile=(300, 400))
    assert within(t4.fps, 27)


def test_hi3402_calibration_cfrnet():
    sim = simulate(cfrnet_paper(), "hi3402", (1, 3, 256, 256))
    assert within(sim.per_inference_ms, 23.0)
    assert sim.unknown_ops == []
    assert any("Hi3402" in a or "HiSilicon" in a for a in sim.assumptions)


@pytest.mark.parametrize("name", ["cfrnet_int8.onnx", "cfrnet_fp32.onnx"])
def test_real_cfrnet_model_if_present(name):
    path = ROOT / "models" / name
    if not path.is_file():
        pytest.skip(f"{path} is not there yet")
    sim = simulate(path, "hi3402", (1, 3, 256, 256))
    assert sim.unknown_ops == []
    meta = OnnxModel(path, threads=1).metadata
    if "macs_per_cycle" in meta:
        assert sim.macs == pytest.approx(float(meta["macs_per_cycle"]), rel=0.01)
    ref = simulate(cfrnet_paper(), "hi3402", (1, 3, 256, 256))
    # a plain CNN of the same kind costs about the same per MAC on the same NPU
    per_mac = sim.per_inference_ms / sim.macs
    assert per_mac == pytest.approx(ref.per_inference_ms / ref.macs, rel=0.25)


# ---------------------------------------------------------------- device report ---------------

@pytest.fixture()
def small_net(tmp_path):
    m = one_node_model("Conv", ("N", 3, "H", "W"), [("w", w(3, 3, 3, 3)), ("b", w(3))],
                       pads=[1, 1, 1, 1], out_name="output")
    m.graph.input[0].name = "input"
    m.graph.node[0].input[0] = "input"
    path = tmp_path / "small.onnx"
    onnx.save(m, path)
    return path


def test_device_report_json(small_net, capsys):
    rc = cli_main(["device-report", str(small_net), "--npu", "ethos-n78", "--size", "64x48",
                   "--k", "3", "--faces", "2", "--json", "--cpu-runs", "2", "--threads", "1"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("npu", "model", "size", "k", "faces", "macs_per_cycle", "params", "per_cycle_ms",
                "total_ms", "cpu_per_cycle_ms"):
        assert key in r
    assert r["npu"] == "ethos-n78" and r["size"] == "64x48" and r["k"] == 3 and r["faces"] == 2
    assert r["macs_per_cycle"] == 3 * 64 * 48 * 27 and r["params"] == 84
    assert r["total_ms"] == pytest.approx(r["per_cycle_ms"] * 6, rel=1e-3)
    assert r["cpu_per_cycle_ms"] > 0 and r["simulated"] is True and r["assumptions"]


def test_device_report_text_with_layers(small_net, capsys):
    rc = cli_main(["device-report", str(small_net), "--layers", "--cpu-runs", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "SIMULATED" in out and "Conv" in out and "this CPU" in out and "assumptions" in out


def test_device_report_names_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    assert cli_main(["device-report", str(bad), "--cpu-runs", "0"]) == 1
    assert "broken.onnx" in capsys.readouterr().err
