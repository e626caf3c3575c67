"""app.core.imresize against MATLAB: hand-derived kernel values and MATLAB's own outputs."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.imresize import cubic, imresize, resize_weights


def test_kernel_matches_keys_a_minus_half():
    # k(0)=1, k(±1)=k(±2)=0, and the a=-0.5 values at quarter points derived by hand.
    x = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5, -0.25])
    expected = [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0, 0.8671875]
    np.testing.assert_allclose(cubic(x), expected, rtol=0, atol=1e-15)


def test_half_scale_weights_are_the_stretched_kernel():
    # ×0.5 with antialiasing: h(d) = 0.5·k(0.5·d) at d = ±0.5, ±1.5, ±2.5, ±3.5.
    w, idx = resize_weights(8, 4, 0.5)
    half = [-0.01171875, -0.03515625, 0.11328125, 0.43359375]
    np.testing.assert_allclose(w[1], half + half[::-1], atol=1e-15)
    # Output 1 (1-based) is centred on u = 1.5: taps -2..5, mirrored at the edge (0→1, -1→2, -2→3).
    assert idx[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-15)


def test_half_scale_of_a_ramp_equals_the_hand_computed_values():
    # Column 10, 20, ..., 80 shrunk ×0.5. Interior outputs of a ramp are the ramp at the centre
    # (15, 35, 55, 75) plus the error of the mirrored taps, e.g. output 1:
    # 15 - 0.01171875·(30+20) - 0.03515625·(20+10) + 0.11328125·(10-0) = 14.4921875.
    col = np.arange(10.0, 90.0, 10.0)
    img = np.repeat(col[:, None], 2, axis=1)
    out = imresize(img, 0.5)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out[:, 0], [14.4921875, 34.8828125, 55.1171875, 75.5078125], atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 0.7])
def test_constant_image_stays_constant(scale):
    img = np.full((23, 17, 3), 0.3)
    out = imresize(img, scale)
    assert out.shape == (int(np.ceil(23 * scale)), int(np.ceil(17 * scale)), 3)
    np.testing.assert_allclose(out, 0.3, atol=1e-12)
    u8 = imresize(np.full((23, 17), 77, np.uint8), scale)
    assert u8.dtype == np.uint8 and np.all(u8 == 77)


def test_output_shape_and_argument_errors():
    img = np.zeros((10, 20))
    assert imresize(img, output_shape=(7, 31)).shape == (7, 31)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 0.5, output_shape=(5, 10))
    with pytest.raises(ValueError):
        imresize(img, -1.0)
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)


@pytest.mark.parametrize(
    "name,scale", [("down_x2", 1 / 2), ("down_x3", 1 / 3), ("down_x4", 1 / 4), ("up_x2", 2), ("up_x3", 3)]
)
def test_matches_matlab_output(test_data, name, scale):
    # A 48×48 crop of the baboon image and the matching interior of MATLAB's imresize of the whole
    # image (im2double → imresize(…, 'bicubic') → imwrite, i.e. rounded to uint8). The crop sits on
    # a multiple of 12 px, so its sampling grid is the full image's; the stored interior is 3 output
    # px (down) or 3 input px (up) away from the crop's edge, beyond the kernel's reach.
    data = np.load(test_data / "imresize_matlab_baboon.npz")
    ref = data[name].astype(np.int64)
    out = imresize(data["input"] / 255.0, scale)
    m = 3 if scale < 1 else 3 * int(scale)
    got = np.clip(np.floor(out * 255 + 0.5), 0, 255).astype(np.int64)[m:-m, m:-m]
    assert got.shape == ref.shape
    assert np.array_equal(got, ref), f"{name}: {np.count_nonzero(got != ref)} pixels differ from MATLAB"


def test_uint8_rounds_each_pass_like_matlab():
    # MATLAB's imresizemex returns the input's class, so a uint8 image is rounded after the first
    # pass too: the result is the float result rounded, within one grey level.
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    u8 = imresize(img, 0.5)
    f = imresize(img.astype(np.float64), 0.5)
    assert u8.dtype == np.uint8
    assert np.abs(u8.astype(float) - np.clip(np.round(f), 0, 255)).max() <= 1
    rows = np.clip(np.floor(imresize(img.astype(np.float64), output_shape=(20, 36)) + 0.5), 0, 255)
    both = np.clip(np.floor(imresize(rows, output_shape=(20, 18)) + 0.5), 0, 255)
    assert np.array_equal(u8, both.astype(np.uint8))


@pytest.mark.parametrize("scale,published", [(2, 33.66), (4, 28.42)])
def test_bicubic_set5_reproduces_the_published_baseline(shared_data, scale, published):
    # The SR protocol built on this resizer (training/sr_eval.py: MATLAB-bicubic LR, Y, shave = s)
    # must give the bicubic row every SR paper prints (sr/PUBLISHED.md, EDSR Table 6) to ±0.03 dB.
    from training.sr_eval import evaluate

    (result,) = evaluate(None, scale, sets=["Set5"], data_dir=shared_data)
    assert result.psnr == pytest.approx(published, abs=0.03)


def test_uint16_keeps_its_dtype_and_range():
    img = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 109).astype(np.uint16)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint16 and out.shape == (15, 10)
    f = imresize(img.astype(np.float64), 0.5)
    assert np.abs(out.astype(float) - np.clip(f, 0, 65535)).max() <= 1.0
