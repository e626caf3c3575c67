"""SESR: the analytic collapse equals the expanded network, training gradients are the same either
way, and the collapsed network exports to ONNX (FP32 and static-QDQ INT8) that runs on any size."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from app.core.onnx_session import OnnxModel  # noqa: E402
from training.onnx_export import compare_with_torch, export_onnx, quantize_int8, read_metadata  # noqa: E402
from training.sesr import SESR, build_sesr, sesr_macs_per_pixel  # noqa: E402


def _trained_like(net: SESR, seed: int = 0) -> SESR:
    """Random weights large enough that every block matters (fresh init is close to identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("expand") or name.endswith("project"):
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
            else:  # PReLU slopes
                p.copy_(torch.rand(p.shape, generator=g) * 0.5)
    return net.eval()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("scale,activation", [(2, "prelu"), (4, "prelu"), (2, "relu")])
def test_collapsed_equals_expanded(scale, activation):
    torch.manual_seed(1)
    net = _trained_like(build_sesr("M5", scale, activation=activation))
    x = torch.rand(2, 1, 37, 29)
    with torch.no_grad():
        expanded = net.forward_expanded(x)
        collapsed_training = net(x)
        inference = net.collapse()(x)
    assert expanded.shape == (2, 1, 37 * scale, 29 * scale)
    # the network did something: far from a plain nearest-neighbour enlargement of the input
    nearest = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    assert float((expanded - nearest).abs().mean()) > 0.01
    assert _rel_err(collapsed_training, expanded) < 1e-5
    assert _rel_err(inference, expanded) < 1e-5


def test_collapsed_training_gradient_equals_expanded():
    net = _trained_like(build_sesr("M3", 2, p=32))
    x, target = torch.rand(1, 1, 20, 20), torch.rand(1, 1, 40, 40)
    grads = []
    for forward in (net.forward, net.forward_expanded):
        net.zero_grad()
        (forward(x) - target).abs().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for g_collapsed, g_expanded in zip(*grads):
        assert _rel_err(g_collapsed, g_expanded) < 1e-4


def test_parameter_count_matches_the_paper():
    # SESR-M5 ×2 collapsed: 13,520 conv weights (+80 PReLU slopes), as the paper counts
    net = build_sesr("M5", 2).collapse()
    convs = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs == sesr_macs_per_pixel(16, 5, 2) == 13520
    assert sesr_macs_per_pixel(16, 5, 2) * 640 * 360 == pytest.approx(3.115e9, rel=1e-3)


def test_export_fp32_and_int8(tmp_path):
    net = _trained_like(build_sesr("M3", 2, p=32))
    collapsed = net.collapse()
    meta = {"scale": 2, "variant": "M3", "macs_per_input_pixel": sesr_macs_per_pixel(16, 3, 2)}
    fp32 = export_onnx(collapsed, tmp_path / "m.onnx", torch.rand(1, 1, 32, 32), meta, dynamic_hw=True)
    # other sizes and a batch than the example's
    diff = compare_with_torch(collapsed, fp32, [torch.rand(2, 1, 45, 23), torch.rand(1, 1, 8, 64)])
    assert diff["max_abs"] < 1e-5
    got = read_metadata(fp32)
    assert got["scale"] == "2" and got["variant"] == "M3" and got["precision"] == "fp32"

    rng = np.random.default_rng(0)
    # smooth calibration and test images (like photos' luma), not white noise
    def smooth(h, w):
        img = rng.random((h // 8 + 2, w // 8 + 2)).astype(np.float32)
        import cv2

        return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)[None, None]

    int8 = quantize_int8(fp32, tmp_path / "m8.onnx", (smooth(48, 48) for _ in range(8)))
    meta8 = OnnxModel(int8).metadata
    assert meta8["precision"] == "int8" and meta8["scale"] == "2" and meta8["variant"] == "M3"
    x = smooth(40, 56)
    a, b = OnnxModel(fp32).run1(x), OnnxModel(int8).run1(x)
    assert b.shape == (1, 1, 80, 112)
    psnr = 10 * np.log10(1.0 / float(np.mean((a - b) ** 2)))
    assert psnr > 30.0, psnr
