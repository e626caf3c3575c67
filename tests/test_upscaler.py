"""The tiled upscaler on a real photo with real (tiny, freshly exported) SESR ONNX models: tiles
leave no seams (tiled == untiled within 0.01 dB), progress per tile, cancel, 8/16-bit, and the
`cfr-studio upscale` command on a real file."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.core.errors import Cancelled, ModelError
from app.core.imresize import imresize
from app.core.io import load_image
from app.core.metrics import psnr, psnr_y
from app.core.upscaler import Upscaler, rgb_to_ycbcr, ycbcr_to_rgb

PHOTO = "sr_b100_img003_crop.png"  # 200×150 RGB crop of B100 img_003 (see tests/data/README.md)


def _export_tiny(path, scale: int, int8: bool = False):
    torch = pytest.importorskip("torch")
    from training.onnx_export import export_onnx, quantize_int8
    from training.sesr import build_sesr

    torch.manual_seed(scale)
    net = build_sesr("M3", scale, p=16)
    with torch.no_grad():  # weights big enough that every layer (and so a seam) would show
        for name, p in net.named_parameters():
            if name.endswith(("expand", "project")):
                p.copy_(torch.randn(p.shape) * (1.5 / p[0].numel()) ** 0.5)
    collapsed = net.collapse()
    meta = {"scale": scale, "variant": "tiny-M3", "receptive_radius": 3 + 4}
    fp32 = export_onnx(collapsed, path, torch.rand(1, 1, 24, 24), meta, dynamic_hw=True)
    if not int8:
        return fp32
    rng = np.random.default_rng(0)
    calib = (rng.random((1, 1, 32, 32), dtype=np.float32) for _ in range(4))
    return quantize_int8(fp32, path.with_name(path.stem + "_int8.onnx"), calib)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("sr_models")
    return {
        "x2": _export_tiny(d / "x2.onnx", 2),
        "x2_int8": _export_tiny(d / "x2q.onnx", 2, int8=True),
        "x4": _export_tiny(d / "x4.onnx", 4),
    }


@pytest.fixture(scope="module")
def photo(test_data):
    return load_image(test_data / PHOTO).rgb


def test_colour_conversion_round_trips():
    rgb = np.random.default_rng(1).random((7, 5, 3))
    assert np.abs(ycbcr_to_rgb(rgb_to_ycbcr(rgb)) - rgb).max() < 1e-12


@pytest.mark.parametrize("which", ["x2", "x2_int8", "x4"])
def test_tiled_equals_untiled(models, photo, which):
    path = models[which]
    whole = Upscaler(path, threads=1, tile=4096)
    s = whole.scale
    # LR 100×75 (×2) or 50×37 (×4) → 5×4 or 4×3 tiles, the last row and column narrower
    tiled = Upscaler(path, threads=1, tile=24 if s == 2 else 16)
    hr = photo[: photo.shape[0] // s * s, : photo.shape[1] // s * s]
    lr = imresize(hr, 1.0 / s)
    a, b = whole.upscale(lr), tiled.upscale(lr)
    assert a.shape == b.shape == hr.shape and a.dtype == b.dtype == np.uint8
    assert len(tiled.tiles(*lr.shape[:2])) > 4 and len(whole.tiles(*lr.shape[:2])) == 1
    # the network changed the picture: it is not just the bicubic chroma path
    assert psnr(a, hr) < 60
    assert abs(psnr_y(b, hr, s) - psnr_y(a, hr, s)) < 0.01
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float rounding at most


def test_without_margin_tiles_show_seams(models, photo):
    # the same comparison fails when tiles get no context: the test above can fail
    whole = Upscaler(models["x2"], threads=1, tile=4096)
    seamy = Upscaler(models["x2"], threads=1, tile=48, margin=0)
    lr = imresize(photo, 0.5)
    assert np.abs(whole.upscale(lr).astype(int) - seamy.upscale(lr).astype(int)).max() > 8


def test_progress_per_tile_and_cancel(models, photo):
    up = Upscaler(models["x2"], threads=1, tile=64)
    calls = []
    up.upscale(photo, progress=lambda d, t, m: calls.append((d, t, m)))
    n = len(up.tiles(*photo.shape[:2]))
    assert n == 4 * 3
    assert [c[0] for c in calls] == list(range(1, n + 1)) and all(c[1] == n for c in calls)
    assert "tile" in calls[-1][2]

    stop = threading.Event()
    seen = []

    def progress(done, total, message):
        seen.append(done)
        if done == 2:
            stop.set()

    with pytest.raises(Cancelled):
        up.upscale(photo, progress=progress, cancel=stop)
    assert seen == [1, 2]
    with pytest.raises(Cancelled):
        up.upscale(photo, cancel=lambda: True)


def test_16_bit_and_grey(models, photo):
    up = Upscaler(models["x2"], threads=1, tile=4096)
    out8 = up.upscale(photo)
    out16 = up.upscale(photo.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16 and out16.shape == out8.shape
    assert np.abs(out16 / 257.0 - out8).max() <= 1.0
    grey = np.repeat(photo[:, :, 1:2], 3, axis=2)
    g = up.upscale(grey).astype(int)
    assert np.abs(g[:, :, 0] - g[:, :, 1]).max() <= 1 and np.abs(g[:, :, 2] - g[:, :, 1]).max() <= 1


def test_bad_input_and_bad_model(models, tmp_path, photo):
    up = Upscaler(models["x2"], threads=1)
    with pytest.raises(ValueError):
        up.upscale(photo.astype(np.float32))
    with pytest.raises(ValueError):
        up.upscale(photo[:, :, 0])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        Upscaler(junk)


def test_cli_upscale_real_file(models, test_data, tmp_path, capsys):
    from app.cli import main

    src = test_data / PHOTO
    dst = tmp_path / "big.png"
    assert main(["upscale", str(src), "-o", str(dst), "--scale", "2", "--model", str(models["x2"]),
                 "--tile", "64"]) == 0
    out = load_image(dst)
    h, w = load_image(src).rgb.shape[:2]
    assert out.rgb.shape == (2 * h, 2 * w, 3)
    assert "→" in capsys.readouterr().out
    # never silently replaces an existing file
    assert main(["upscale", str(src), "-o", str(dst), "--model", str(models["x2"])]) == 1
    assert "exists" in capsys.readouterr().err
    # a ×2 model asked to do ×4
    assert main(["upscale", str(src), "-o", str(tmp_path / "b4.png"), "--scale", "4",
                 "--model", str(models["x2"])]) == 1
    assert "×2" in capsys.readouterr().err
    assert not (tmp_path / "b4.png").exists()
    assert main(["upscale", str(src), "-o", str(tmp_path / "b4.jpg"), "--scale", "4",
                 "--model", str(models["x4"])]) == 0
    assert load_image(tmp_path / "b4.jpg").rgb.shape == (4 * h, 4 * w, 3)


def test_default_model_per_family_ignores_other_variants(tmp_path, monkeypatch):
    """A larger or extra variant beside the shipped one (SESR-M11, FALSR-B) never becomes the default."""
    from app.core.upscaler import default_upscaler_path

    monkeypatch.setenv("CFR_MODELS", str(tmp_path))
    for name in ("falsr_b_x2_int8.onnx", "falsr_c_x2_int8.onnx", "sesr_m11_x2_int8.onnx", "sesr_m5_x2_int8.onnx",
                 "sesr_m11_x4_fp32.onnx"):
        (tmp_path / name).write_bytes(b"")
    assert default_upscaler_path(2, family="falsr").name == "falsr_c_x2_int8.onnx"
    assert default_upscaler_path(2).name == "sesr_m5_x2_int8.onnx"
    # no preferred file: the first of the family at that scale and precision
    assert default_upscaler_path(4, precision="fp32").name == "sesr_m11_x4_fp32.onnx"
