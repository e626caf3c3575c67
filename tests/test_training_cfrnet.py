"""CFRNet training pieces: network size, degradations, LPIPS loss, a short training run, resume,
ONNX export (FP32 matches torch; INT8 holds QDQ nodes and runs). Small: 64² crops, seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.cfrnet import build, count_macs, count_params  # noqa: E402
from training.degrade import degrade, degrade_eval_set  # noqa: E402


def _faces(shared_data: Path, n: int, size: int) -> np.ndarray:
    """n real faces from faces/val, centre square resized to size²."""
    import cv2

    from training.face_pack import list_images, load_rgb, resize_crop

    files = list_images(shared_data / "faces" / "val")[:: 23][:n]
    return np.stack([cv2.resize(resize_crop(load_rgb(p)), (size, size), interpolation=cv2.INTER_AREA)
                     for p in files])


def test_parameter_count_and_macs_in_range():
    net = build()
    assert 1.8e6 <= count_params(net) <= 2.2e6
    assert count_macs(net, 256) <= 10e9


def test_untrained_net_is_identity():
    # the tail starts at zero: an untrained net is the identity, a fixed point of every cycle
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(build()(x), x)


def test_degradation_is_deterministic_under_a_seed(shared_data):
    face = _faces(shared_data, 1, 128)[0]
    a = degrade(face, np.random.default_rng(7))
    b = degrade(face, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == face.shape
    assert np.array_equal(a, b)
    outs = [degrade(face, np.random.default_rng(s)) for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    # the evaluation set: same seed → same images, whatever was degraded before
    s1 = degrade_eval_set([face, face], seed=3)
    s2 = degrade_eval_set([face, face], seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(s1, s2))
    assert not np.array_equal(s1[0], s1[1])  # each image has its own stream


def test_degradation_damages_the_face(shared_data):
    faces = _faces(shared_data, 4, 128)
    deg = degrade_eval_set(list(faces), seed=11)
    err = [np.abs(d.astype(float) - f).mean() for d, f in zip(deg, faces)]
    assert np.mean(err) > 2.0


def test_degrade_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        degrade(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


def test_torch_lpips_matches_reference_values(shared_data):
    from training.losses import LPIPSAlex

    metrics = shared_data / "metrics"
    ref = json.loads((metrics / "lpips_reference_values.json").read_text())["values"]
    imgs = np.load(metrics / "lpips_test_inputs.npz")
    lp = LPIPSAlex(metrics / "lpips_alex.onnx")
    t = lambda u: torch.from_numpy(u.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    checked = 0
    for key, value in ref.items():
        parts = key.split(" vs ")
        if len(parts) != 2 or parts[0] not in imgs.files or parts[1] not in imgs.files:
            continue
        with torch.no_grad():
            d = float(lp(t(imgs[parts[0]]), t(imgs[parts[1]]))[0])
        assert d == pytest.approx(value, abs=1e-4), key
        checked += 1
    assert checked >= 3


def test_ccfp_training_steps_reduce_the_loss(shared_data):
    """A few CCFP steps (K = 2, idempotence, re-degradation) on a handful of 64² crops."""
    from training.losses import RestorationLoss
    from training.train_cfrnet import step_loss, to_tensor

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clean = _faces(shared_data, 2, 64)
    y = to_tensor(clean)
    x = to_tensor(np.stack([degrade(c, rng) for c in clean]))
    net = build()
    crit = RestorationLoss(lpips_weight=0.1, lpips_path=shared_data / "metrics" / "lpips_alex.onnx")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)

    def degrade_batch(u8):
        return np.stack([degrade(c, rng) for c in u8])

    with torch.no_grad():
        before = float(crit(net(x), y))
    seen = set()
    # the recipe in miniature: single-cycle steps first, then CCFP steps (K = 2)
    for i in range(20):
        k = 1 if i < 14 else 2
        loss, logs = step_loss(net, crit, x, y, k, i % 2 == 0, degrade_batch, clean_n=1)
        seen |= set(logs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"l1", "c1", "c2", "idem", "idem_clean", "redeg"} <= seen
    with torch.no_grad():
        after = float(crit(net(x), y))
    assert after < 0.97 * before  # measured: 0.951 after 20 steps


def test_late_cycle_lpips_weight_changes_only_cycles_from_three(shared_data):
    """--lpips-late: λ_LPIPS of cycles ≥ 3; cycles 1 and 2 keep the criterion's own λ."""
    from training.cfrnet import build
    from training.degrade import degrade
    from training.losses import RestorationLoss
    from training.train_cfrnet import step_loss, to_tensor

    rng = np.random.default_rng(1)
    clean = _faces(shared_data, 2, 64)
    y = to_tensor(clean)
    x = to_tensor(np.stack([degrade(c, rng) for c in clean]))
    torch.manual_seed(0)
    net = build().eval()
    crit = RestorationLoss(lpips_weight=0.03, lpips_path=shared_data / "metrics" / "lpips_alex.onnx")

    def run(k, late):
        with torch.no_grad():
            return step_loss(net, crit, x, y, k, False, None, clean_n=1, lpips_late=late)[1]

    same, late = run(3, None), run(3, 0.3)
    assert late["c1"] == same["c1"] and late["c2"] == same["c2"]
    assert late["c3"] > same["c3"] + 1e-4  # cycle 3 carries the larger perceptual term
    assert run(2, 0.3) == run(2, None)  # K = 2 has no late cycle


def test_grid_metric_sees_a_period_four_pattern_and_not_noise():
    from app.core.metrics import periodic_grid
    from training.train_cfrnet import grid_batch

    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 64, 64, generator=g)
    dots = torch.zeros(1, 1, 64, 64)
    dots[..., ::4, ::4] = 8 / 255  # an 8-level dot every 4 px
    noise = (torch.rand(2, 3, 64, 64, generator=g) - 0.5) * 16 / 255  # as strong, but no period
    clean = y.clamp(0.1, 0.9)
    assert max(grid_batch(clean, clean)) < 1e-4
    with_dots = torch.tensor(grid_batch(clean + dots, clean), dtype=torch.float64)
    with_noise = torch.tensor(grid_batch(clean + noise, clean))
    assert torch.allclose(with_dots, torch.full((2,), 8 * 15**0.5 / 16, dtype=torch.float64), atol=0.01)
    assert with_noise.max() < 0.5 * with_dots.min()
    # the same figure on 8-bit images (how the evaluation table measures it)
    u8 = (clean[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    dotted = u8.copy()
    dotted[::4, ::4] += 8
    assert abs(periodic_grid(dotted, u8) - 8 * 15**0.5 / 16) < 0.01


def test_grid_loss_is_the_grid_metric_and_charges_only_the_pattern():
    from app.core.metrics import periodic_grid
    from training.losses import RestorationLoss, periodic_pattern_power

    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 32, 32, generator=g) * 0.8 + 0.1
    dots = torch.zeros_like(y)
    dots[..., 1::8, 2::8] = 0.03  # period 8
    pred = (y + dots).requires_grad_(True)
    got = periodic_pattern_power(pred - y).sqrt()
    want = [periodic_grid(p.permute(1, 2, 0).detach().numpy(), t.permute(1, 2, 0).numpy(), peak=1.0)
            for p, t in zip(pred, y)]
    assert torch.allclose(got.double() * 255, torch.tensor(want, dtype=torch.float64), atol=1e-4)
    plain, charged = RestorationLoss(0.0), RestorationLoss(0.0, grid_weight=100.0)
    assert torch.isclose(charged(y + 0.05, y), plain(y + 0.05, y), atol=1e-5)  # a uniform error: no pattern
    loss = charged(pred, y)
    assert loss > plain(pred, y) + 0.0005
    loss.backward()
    assert pred.grad[..., 1::8, 2::8].sum() > 0  # pushes the dots down


def test_rmse_pixel_loss_is_the_psnr_error_at_l1_scale(shared_data):
    from training.losses import RestorationLoss

    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 16, 16, generator=g)
    pred = y.clone()
    pred[0] += 0.1 * torch.randn(3, 16, 16, generator=g)
    pred[1] += 0.02  # a uniform error: RMSE = L1 = 0.02
    pred.requires_grad_(True)
    rmse = RestorationLoss(0.0, pixel="rmse")
    loss = rmse(pred, y)
    want = ((pred - y) ** 2).flatten(1).mean(1).sqrt().mean()
    assert torch.isclose(loss, want, atol=1e-6)
    loss.backward()
    # each sample's gradient has L1's norm, 1/sqrt(pixels), however large its error
    norms = pred.grad.flatten(1).norm(dim=1) * 2  # × batch size: the loss is a batch mean
    assert torch.allclose(norms, torch.full((2,), (3 * 16 * 16) ** -0.5), rtol=1e-3)
    assert torch.isclose(RestorationLoss(0.0, pixel="l1")(pred[1:], y[1:]), torch.tensor(0.02), atol=1e-6)
    with pytest.raises(ValueError, match="pixel loss"):
        RestorationLoss(0.0, pixel="l2")
    # λ = 0 for the early cycles but a later cycle's λ: LPIPS must still be built
    late_only = RestorationLoss(0.0, lpips_path=shared_data / "metrics" / "lpips_alex.onnx", lpips_needed=True)
    assert late_only.lpips is not None
    big_y = torch.rand(1, 3, 64, 64, generator=g)
    big_pred = (big_y + 0.1 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    assert late_only(big_pred, big_y, lpips_weight=0.1) > late_only(big_pred, big_y) + 1e-3


def test_anneal_scale_ramps_down_over_the_last_steps():
    from training.train_cfrnet import anneal_scale

    assert anneal_scale(100, None, 50) == 1.0 and anneal_scale(100, 200, 0) == 1.0
    assert anneal_scale(149, 200, 50) == 1.0
    assert anneal_scale(175, 200, 50) == 0.5
    assert anneal_scale(199, 200, 50) == 0.05  # never quite zero


def test_selection_score_penalises_the_grid():
    from training.train_cfrnet import selection_score

    # the monitor's figures at steps 12,054 (grid as measured on 48 faces) and 15,575
    gridded = {"psnr_2": 22.533, "lpips_2": 0.3191, "grid_2": 1.91}
    clean = {"psnr_2": 22.612, "lpips_2": 0.3268, "grid_2": 0.83}
    assert selection_score(gridded) < selection_score(clean)
    assert selection_score(clean) > selection_score(clean | {"psnr_2": 22.5})


def test_training_run_checkpoints_and_resumes(shared_data, tmp_path):
    from training.train_cfrnet import main

    faces = _faces(shared_data, 6, 128)
    np.save(tmp_path / "train.npy", faces)
    (tmp_path / "train.json").write_text(json.dumps({"hq": [True] + [False] * 5, "method": "test"}))
    np.save(tmp_path / "val.npy", faces[:2, ::2, ::2])  # the net is fully convolutional: 64² val
    args = ["--mode", "baseline", "--pack", str(tmp_path / "train.npy"), "--val-pack",
            str(tmp_path / "val.npy"), "--run-dir", str(tmp_path / "run"), "--batch", "2", "--crop", "64",
            "--eval-n", "2", "--log-every", "1", "--lpips", "0", "--resume"]
    assert main(args + ["--steps", "2"]) == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 2
    assert main(args + ["--steps", "3"]) == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 3
    lines = (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3]
    assert (tmp_path / "run" / "best_ema.fp16.pt").is_file()
    # a branch continues another run's whole state under another mode (how the baseline and CCFP
    # share their single-cycle pre-training)
    args2 = [a if a != str(tmp_path / "run") else str(tmp_path / "branch") for a in args]
    args2[1] = "ccfp"
    assert main(args2 + ["--branch-from", str(tmp_path / "run" / "checkpoint.pt"), "--steps", "4"]) == 0
    ck = torch.load(tmp_path / "branch" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and ck["mode"] == "ccfp"
    # the EMA of a checkpoint loads like a weights file (the equal-step ablation exports it)
    from training.train_cfrnet import load_weights

    net, info = load_weights(tmp_path / "branch" / "checkpoint.pt")
    assert info["step"] == 4 and info["mode"] == "ccfp"
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ck["ema"].items())


def _trained_like_net() -> torch.nn.Module:
    """The real architecture with a non-trivial (but small) residual, as after some training."""
    torch.manual_seed(1)
    net = build()
    with torch.no_grad():
        net.tail.weight.normal_(0, 0.01)
    return net.eval()


def test_onnx_export_matches_torch_and_int8_has_qdq(tmp_path):
    import onnx

    from app.core.onnx_session import OnnxModel
    from training.export_cfrnet import OneCycle
    from training.onnx_export import compare_with_torch, export_onnx, quantize_int8

    net = OneCycle(_trained_like_net()).eval()
    fp32, int8 = tmp_path / "c_fp32.onnx", tmp_path / "c_int8.onnx"
    export_onnx(net, fp32, torch.zeros(1, 3, 64, 64), {"name": "CFRNet", "licence": "test"})
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(2)]
    assert compare_with_torch(net, fp32, inputs)["max_abs"] < 1e-4
    ops = {n.op_type for n in onnx.load(str(fp32)).graph.node}
    # NPU-friendly operators only (Identity: the exporter's alias for weights shared by value)
    assert ops <= {"Conv", "Relu", "Add", "SpaceToDepth", "DepthToSpace", "Clip", "Constant", "Identity"}, ops

    calib = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(6)]
    quantize_int8(fp32, int8, calib, {"name": "CFRNet"})
    g = onnx.load(str(int8)).graph
    q_ops = [n.op_type for n in g.node]
    assert q_ops.count("QuantizeLinear") >= 10 and q_ops.count("DequantizeLinear") >= 10
    m = OnnxModel(int8, threads=1)
    assert m.metadata["precision"] == "int8"
    out = m.run1(inputs[0])
    ref = OnnxModel(fp32, threads=1).run1(inputs[0])
    assert out.shape == (1, 3, 64, 64)
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - ref).mean() < 0.02


def test_blend_weights_interpolates_every_parameter(tmp_path):
    from training.blend_weights import blend, main
    from training.cfrnet import build
    from training.train_cfrnet import load_weights, save_weights_fp16

    torch.manual_seed(0)
    a, b = build(), build()
    for p in b.parameters():
        torch.nn.init.normal_(p, std=0.01)
    mid = blend(a, b, 0.25)
    for (name, pa), pb, pm in zip(a.named_parameters(), b.parameters(), mid.parameters()):
        assert torch.allclose(pm, 0.75 * pa + 0.25 * pb, atol=1e-7), name
    assert all(torch.equal(p, q) for p, q in zip(blend(a, b, 0.0).parameters(), a.parameters()))
    with pytest.raises(ValueError, match="alpha"):
        blend(a, b, 1.5)
    with pytest.raises(ValueError, match="different networks"):
        blend(a, build({"n_deep": 2}), 0.5)
    # the command line writes a weights file that load_weights (and so export_cfrnet) reads
    save_weights_fp16(a, tmp_path / "a.pt", {"step": 10, "train_hours": 1.0, "mode": "ccfp"})
    save_weights_fp16(b, tmp_path / "b.pt", {"step": 12, "train_hours": 1.2, "mode": "ccfp"})
    assert main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--alpha", "0.5",
                 "--out", str(tmp_path / "m.pt")]) == 0
    net, info = load_weights(tmp_path / "m.pt")
    assert info["step"] == 12 and info["blend"]["alpha"] == 0.5
    want = blend(*(load_weights(tmp_path / n)[0] for n in ("a.pt", "b.pt")), 0.5)
    for p, q in zip(net.parameters(), want.parameters()):
        assert torch.allclose(p, q, atol=1e-3)  # fp16 storage
