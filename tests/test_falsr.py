"""FALSR: the published architectures (parameters, Mult-Adds), the forward contract, the tiler's
receptive radius, and the FP32/INT8 ONNX export through training/onnx_export.

Published figures (paper Table 1 / xiaomi-automl/FALSR README, ×2, Mult-Adds for a 1280×720
output): A 1,021K / 234.7G, B 326K / 74.7G, C 408K / 93.7G. Our networks match the authors'
released graphs weight for weight; FALSR-C's released graph is 4.5 % larger than its printed
figures (training/falsr.py), hence C's wider tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from app.core.npu import analyse_model  # noqa: E402
from app.core.onnx_session import OnnxModel  # noqa: E402
from training.falsr import PUBLISHED, VARIANTS, build_falsr, count_macs, receptive_radius  # noqa: E402

# relative tolerance against the printed figures (see the module docstring)
TOLERANCE = {"A": 0.01, "B": 0.01, "C": 0.05}
LR_720P_PIXELS = 640 * 360  # ×2 → 1280×720 output, the papers' convention
# Every conv is "same"-padded, so the work is exactly linear in the pixel count: count it on a
# 1/100 frame of the same aspect and scale up (a 720p forward would cost seconds per variant).
SMALL = (1, 1, 36, 64)


def _lively(variant: str, seed: int = 0):
    """A randomly initialised network whose output is mostly inside (0, 1), so comparisons are not
    won by the final clip."""
    torch.manual_seed(seed)
    model = build_falsr(variant).eval()
    with torch.no_grad():
        model.out.bias.fill_(0.5)
        model.out.weight.mul_(0.2)
    return model


def _smooth_images(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Photo-like calibration/probe inputs: smooth random fields plus mild noise, in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.random((h // 8 + 2, w // 8 + 2)).astype(np.float32)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + 0.03 * rng.standard_normal((h, w)).astype(np.float32), 0, 1)
        out.append(img[None, None])
    return out


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_parameter_count_matches_published(variant):
    params = sum(p.numel() for p in build_falsr(variant).parameters())
    published = PUBLISHED[variant]["params"]
    assert abs(params / published - 1) < TOLERANCE[variant], (variant, params, published)


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_macs_for_720p_output_match_published(variant):
    macs = count_macs(build_falsr(variant), SMALL) * LR_720P_PIXELS // (36 * 64)
    published = PUBLISHED[variant]["mult_adds_720p"]
    assert abs(macs / published - 1) < TOLERANCE[variant], (variant, macs / 1e9)


def test_forward_shape_range_and_any_size():
    model = _lively("C")
    for shape in [(2, 1, 12, 10), (1, 1, 7, 19)]:
        with torch.no_grad():
            y = model(torch.rand(shape))
        assert y.shape == (shape[0], 1, 2 * shape[2], 2 * shape[3])
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown FALSR variant"):
        build_falsr("D")


@pytest.mark.parametrize("variant", ["B", "C"])
def test_receptive_radius_bounds_the_dependence(variant):
    """The gradient of a 2×2 HR block w.r.t. the LR input is zero beyond ``receptive_radius`` and
    reaches it exactly (so the tiler's margin is both safe and not wasteful)."""
    model = _lively(variant)
    with torch.no_grad():  # biases up so no ReLU path is dead: the full support shows
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.fill_(0.05)
    r = receptive_radius(model.arch)
    n, c = 2 * r + 9, r + 4
    x = torch.rand(1, 1, n, n, requires_grad=True)
    out = model(x)
    out[0, 0, 2 * c:2 * c + 2, 2 * c:2 * c + 2].sum().backward()
    ys, xs = np.nonzero(x.grad[0, 0].numpy())
    reach = max(c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)
    assert reach == r, (variant, reach, r)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from training.export_falsr import export

    torch.set_num_threads(1)
    model = _lively("C")
    out = tmp_path_factory.mktemp("falsr")
    paths = export("C", model=model, out_dir=out, info={"step": 0, "seconds": 0.0},
                   calibration=_smooth_images(6, 48, 48, seed=1))
    return model, paths


def test_fp32_export_equals_torch(exported):
    model, paths = exported
    probe = _smooth_images(1, 40, 56, seed=2)[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(probe)).numpy()
    got = OnnxModel(paths["fp32"], threads=1).run1(probe)
    assert got.shape == (1, 1, 80, 112)
    inside = np.mean((ref > 0) & (ref < 1))
    assert inside > 0.5  # the comparison is about the network, not the clip
    assert float(np.max(np.abs(got - ref))) < 1e-4


def test_int8_has_qdq_and_follows_fp32(exported):
    _, paths = exported
    graph = onnx.load(str(paths["int8"])).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    probe = _smooth_images(1, 40, 56, seed=3)[0]
    fp32 = OnnxModel(paths["fp32"], threads=1).run1(probe)
    int8 = OnnxModel(paths["int8"], threads=1).run1(probe)
    assert int8.shape == fp32.shape
    assert float(np.mean(np.abs(int8 - fp32))) < 0.02


def test_metadata_follows_the_sr_contract(exported):
    model, paths = exported
    for precision, path in paths.items():
        m = OnnxModel(path, threads=1)
        meta = m.metadata
        assert m.input_names == ["input"] and m.output_names == ["output"]
        assert meta["precision"] == precision
        assert meta["scale"] == "2" and meta["variant"] == "FALSR-C"
        assert int(meta["params"]) == sum(p.numel() for p in model.parameters())
        assert int(meta["receptive_radius"]) == receptive_radius(model.arch)
        per_px = int(meta["macs_per_input_pixel"])
        assert per_px == round(count_macs(model, (1, 1, 16, 16)) / 256)


def test_npu_analysis_agrees_with_our_count(exported):
    """The NPU helper's graph walk of the exported file counts the same work as the torch hooks."""
    model, paths = exported
    stats = analyse_model(paths["fp32"], input_shape=SMALL)
    ours = count_macs(model, SMALL)
    assert abs(stats.macs / ours - 1) < 0.002
    assert stats.params == sum(p.numel() for p in model.parameters())
    assert not stats.unknown_ops


def test_tiled_upscale_equals_untiled(exported):
    """With the metadata's receptive radius as margin, the tiler's seams are invisible."""
    from app.core.upscaler import Upscaler

    _, paths = exported
    rgb = (np.dstack([_smooth_images(1, 70, 90, seed=s)[0][0, 0] for s in (4, 5, 6)]) * 255).astype(np.uint8)
    whole = Upscaler(paths["fp32"], threads=1, tile=256).upscale(rgb)
    tiled = Upscaler(paths["fp32"], threads=1, tile=32).upscale(rgb)
    assert whole.shape == (140, 180, 3)
    assert int(np.max(np.abs(whole.astype(int) - tiled.astype(int)))) <= 1


def test_every_variant_is_registered():
    assert set(VARIANTS) == {"A", "B", "C"} == set(PUBLISHED)


def test_float_layers_preset_keeps_those_convs_float(exported, tmp_path):
    """INT8 mixed precision (--float-layers io): the named convs read float weights directly, the
    rest read dequantised INT8 weights, and the file says which layers stayed float."""
    from training.export_falsr import FLOAT_LAYERS, export

    model, _ = exported
    paths = export("C", model=model, out_dir=tmp_path, info={"step": 0, "seconds": 0.0},
                   calibration=_smooth_images(4, 48, 48, seed=1), float_layers="io")
    graph = onnx.load(str(paths["int8"])).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    initialisers = {i.name for i in graph.initializer}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    float_convs = {n for n in FLOAT_LAYERS["io"] if n in convs}
    assert float_convs == {"/stem/Conv", "/fuse/Conv", "/out/Conv"}
    for name, node in convs.items():
        w = node.input[1]
        if name in float_convs:
            assert w in initialisers, name  # the float weight itself
        else:
            assert produced_by[w].op_type == "DequantizeLinear", name
    meta = OnnxModel(paths["int8"], threads=1).metadata
    assert meta["int8_float_layers"].split(",") == list(FLOAT_LAYERS["io"])
    probe = _smooth_images(1, 40, 56, seed=3)[0]
    fp32 = OnnxModel(paths["fp32"], threads=1).run1(probe)
    assert float(np.mean(np.abs(OnnxModel(paths["int8"], threads=1).run1(probe) - fp32))) < 0.02


def test_bf16_trunk_follows_fp32_and_trains():
    """The training speed-up (cells under bf16 autocast) changes the output by bf16 rounding only,
    still back-propagates to every weight, and is off by default (what export and eval see)."""
    torch.manual_seed(0)
    model = _lively("C")
    assert model.trunk_dtype is None
    x = torch.from_numpy(_smooth_images(2, 24, 24, seed=7)[0])
    with torch.no_grad():
        ref = model(x)
    model.trunk_dtype = torch.bfloat16
    out = model(x)
    assert out.dtype == torch.float32
    assert 0 < float((out.detach() - ref).abs().max()) < 0.05
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
