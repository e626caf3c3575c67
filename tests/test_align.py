"""app.core.align: the template, the similarity fit, the antialiased warp, the crop, paste-back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core import align


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.transform(np.asarray(pts, np.float64)[None], m)[0]


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def portrait(test_data):
    return np.array(Image.open(test_data / "portrait_bopb_old_a.jpg").convert("RGB"))


# Landmarks of the fixture portrait's face, as the detector gives them (measured once; the
# alignment tests should not depend on the detector).
PORTRAIT_LANDMARKS = np.array(
    [[126.0, 174.0], [195.0, 173.0], [177.0, 216.0], [131.0, 241.0], [191.0, 238.0]]
)


def test_template():
    t5 = align.template()
    np.testing.assert_allclose(t5, align.TEMPLATE_256)
    t4 = align.template(points=4)
    np.testing.assert_allclose(t4[3], align.MOUTH_CENTRE_256)
    np.testing.assert_allclose(align.MOUTH_CENTRE_256, align.TEMPLATE_256[3:].mean(0), atol=0.01)
    np.testing.assert_allclose(align.template(512), 2 * align.TEMPLATE_256)
    with pytest.raises(ValueError):
        align.template(points=3)


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (12, 0.4, 30, -7), (-35, 2.5, -100, 40), (180, 1.3, 5, 5)])
def test_estimate_similarity_recovers_a_known_transform(angle, scale, tx, ty):
    src = align.TEMPLATE_256 + np.array([3.0, -2.0])
    m = _similarity(angle, scale, tx, ty)
    dst = _apply(m, src)
    np.testing.assert_allclose(align.estimate_similarity(src, dst), m, atol=1e-9)
    assert align.similarity_scale(m) == pytest.approx(scale)


def test_estimate_similarity_is_least_squares_and_never_reflects():
    rng = np.random.default_rng(0)
    src = align.TEMPLATE_256
    m = _similarity(10, 0.8, 20, 30)
    dst = _apply(m, src) + rng.normal(0, 1.0, src.shape)
    fit = align.estimate_similarity(src, dst)
    assert np.abs(fit - m).max() < 3.0
    # residual of the fit ≤ residual of the true transform (it is the least-squares optimum)
    assert np.sum((_apply(fit, src) - dst) ** 2) <= np.sum((_apply(m, src) - dst) ** 2) + 1e-9
    mirrored = src * np.array([-1.0, 1.0])
    fit = align.estimate_similarity(src, mirrored)
    assert np.linalg.det(fit[:, :2]) > 0  # a mirror image is not a similarity


def test_estimate_similarity_bad_input():
    with pytest.raises(ValueError):
        align.estimate_similarity(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="one point"):
        align.estimate_similarity(np.ones((5, 2)), align.TEMPLATE_256)
    bad = align.TEMPLATE_256.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        align.estimate_similarity(bad, align.TEMPLATE_256)


def test_alignment_matrix_maps_landmarks_onto_the_template():
    m_true = _similarity(-8, 0.37, 411, 95)  # template → image
    landmarks = _apply(m_true, align.TEMPLATE_256)
    m = align.alignment_matrix(landmarks)
    np.testing.assert_allclose(_apply(m, landmarks), align.TEMPLATE_256, atol=1e-9)
    four = np.vstack([landmarks[:3], landmarks[3:].mean(0)])
    np.testing.assert_allclose(_apply(align.alignment_matrix(four), four), align.template(points=4), atol=0.01)
    np.testing.assert_allclose(align.alignment_matrix(landmarks, 512), np.diag([2.0, 2.0]) @ m, atol=1e-9)


def test_invert():
    m = _similarity(20, 1.7, 3, 4)
    pts = np.array([[1.0, 2.0], [50.0, -3.0]])
    np.testing.assert_allclose(_apply(align.invert(m), _apply(m, pts)), pts, atol=1e-9)


def test_warp_affine_matches_opencv_when_enlarging(portrait):
    """The region cut (only the part of the source the output sees) changes nothing."""
    portrait = np.ascontiguousarray(portrait[::2, ::2])
    m = align.alignment_matrix(PORTRAIT_LANDMARKS / 2)
    assert align.similarity_scale(m) > 1
    ours = align.warp_affine(portrait, m, (256, 256))
    ref = cv2.warpAffine(portrait, m, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(ours, ref)


def test_warp_affine_does_not_alias_when_shrinking():
    """A 1-px checkerboard shrunk 5× must come out flat grey (area averaging), not a moiré."""
    yy, xx = np.mgrid[0:500, 0:500]
    board = (((xx + yy) % 2) * 255).astype(np.uint8)
    m = np.array([[0.2, 0, 0], [0, 0.2, 0]])
    ours = align.warp_affine(board, m, (100, 100)).astype(float)
    naive = cv2.warpAffine(board, m, (100, 100), flags=cv2.INTER_CUBIC).astype(float)
    assert np.abs(ours[5:-5, 5:-5] - 127.5).max() < 3
    assert np.abs(naive[5:-5, 5:-5] - 127.5).max() > 50  # the check can fail: cubic alone aliases


def test_warp_affine_shrinking_keeps_positions():
    """The half-pixel bookkeeping of the pre-shrink: a bright dot lands where the matrix says."""
    img = np.zeros((400, 400), np.float32)
    cv2.circle(img, (250, 130), 12, 1.0, -1)
    m = _similarity(15, 0.25, 20, 10)
    out = align.warp_affine(img, m, (128, 128))
    ys, xs = np.nonzero(out > 0.5 * out.max())
    expect = _apply(m, np.array([[250.0, 130.0]]))[0]
    assert abs(xs.mean() - expect[0]) < 0.5 and abs(ys.mean() - expect[1]) < 0.5


@pytest.mark.parametrize("half,min_psnr", [(True, 35.0), (False, 32.0)])
def test_align_face_and_inverse_warp_round_trip(portrait, half, min_psnr):
    """Crop, then warp the crop back into the photo: the face comes back where it was. Measured:
    36.8 dB when the crop enlarges the face (half-size photo, 1.86×) and 34.4 dB when it shrinks
    it (0.93×); the loss is warp_affine's antialiasing on the way down, the price of no moiré.
    Half a pixel of misregistration costs several dB, so the check sees geometry errors."""
    photo, landmarks = portrait, PORTRAIT_LANDMARKS
    if half:
        photo = cv2.resize(portrait, (portrait.shape[1] // 2, portrait.shape[0] // 2), interpolation=cv2.INTER_AREA)
        landmarks = (PORTRAIT_LANDMARKS + 0.5) / 2 - 0.5
    crop = align.align_face(photo, landmarks)
    assert crop.image.shape == (256, 256, 3) and crop.image.dtype == np.uint8
    assert crop.size == 256
    h, w = photo.shape[:2]
    inv = align.invert(crop.matrix)
    back = align.warp_affine(crop.image, inv, (w, h), border=cv2.BORDER_CONSTANT)
    # compare where the crop covers the photo, away from its border
    cover = cv2.warpAffine(np.ones((256, 256), np.float32), inv, (w, h))
    cover = cv2.erode((cover > 0.99).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert cover.sum() > 5000
    good = _psnr(back[cover], photo[cover])
    assert good > min_psnr
    shifted = inv.copy()
    shifted[:, 2] += 0.5
    off = align.warp_affine(crop.image, shifted, (w, h), border=cv2.BORDER_CONSTANT)
    assert _psnr(off[cover], photo[cover]) < good - 3.0  # measured: 5–8 dB lower
    # the landmarks land on the template (up to the fit's residual: this face is turned a little)
    np.testing.assert_allclose(_apply(crop.matrix, landmarks), align.TEMPLATE_256, atol=13)


def test_align_face_keeps_16_bits(portrait):
    crop = align.align_face(portrait.astype(np.uint16) * 257, PORTRAIT_LANDMARKS)
    assert crop.image.dtype == np.uint16
    ref = align.align_face(portrait, PORTRAIT_LANDMARKS)
    assert np.abs(crop.image / 257.0 - ref.image).max() <= 1.5  # 8-bit rounding of the reference


def test_face_mask():
    m = align.face_mask(256, 0.1)
    assert m.shape == (256, 256) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[0].max() == 0 and m[:, -1].max() == 0  # nothing at the crop's edge
    assert m[64:192, 64:192].min() == 1.0  # the face itself fully
    row = m[128, :128]
    assert np.all(np.diff(row) >= 0)  # rises monotonically towards the middle


def test_match_colour():
    rng = np.random.default_rng(3)
    orig = rng.normal(0.4, 0.08, (64, 64, 3)).astype(np.float32)
    restored = rng.normal(0.6, 0.1, (64, 64, 3)).astype(np.float32)
    w = np.ones((64, 64), np.float32)
    out = align.match_colour(restored, orig, w)
    np.testing.assert_allclose(out.mean((0, 1)), orig.mean((0, 1)), atol=1e-4)
    np.testing.assert_allclose(out.std((0, 1)), orig.std((0, 1)), rtol=1e-3)
    # the gain is bounded: a flat restoration is not blown up to match a noisy original
    flat = np.full((64, 64, 3), 0.5, np.float32) + rng.normal(0, 0.001, (64, 64, 3)).astype(np.float32)
    assert align.match_colour(flat, orig, w).std() < 0.01


def test_paste_back_identity_leaves_the_photo(portrait):
    """Pasting back the unrestored crop returns the photo (up to the double resampling)."""
    crop = align.align_face(portrait, PORTRAIT_LANDMARKS)
    out = align.paste_back(portrait.copy(), crop, crop.image)
    assert _psnr(out, portrait) > 35
    unchanged = align.paste_back(portrait.copy(), crop, np.zeros((256, 256, 3), np.float32), blend=0.0)
    np.testing.assert_array_equal(unchanged, portrait)


def test_paste_back_touches_only_the_face(portrait):
    crop = align.align_face(portrait, PORTRAIT_LANDMARKS)
    out = align.paste_back(portrait.copy(), crop, np.full((256, 256, 3), 0.9, np.float32), colour_match=False)
    changed = np.abs(out.astype(int) - portrait.astype(int)).max(2) > 0
    ys, xs = np.nonzero(changed)
    corners = _apply(align.invert(crop.matrix), np.array([[0, 0], [256, 0], [0, 256], [256, 256]], np.float64))
    assert xs.min() >= corners[:, 0].min() - 2 and xs.max() <= corners[:, 0].max() + 2
    assert ys.min() >= corners[:, 1].min() - 2 and ys.max() <= corners[:, 1].max() + 2
    # in place, and returned
    img = portrait.copy()
    assert align.paste_back(img, crop, crop.image) is img


def test_paste_back_grey_16bit_and_edges(portrait):
    grey16 = (portrait.mean(2) * 257).astype(np.uint16)
    crop = align.align_face(grey16, PORTRAIT_LANDMARKS)
    assert crop.image.shape == (256, 256)
    restored = np.full((256, 256, 3), 0.5, np.float32)  # the network answers in RGB
    out = align.paste_back(grey16.copy(), crop, restored, colour_match=False)
    assert out.dtype == np.uint16 and out.shape == grey16.shape
    assert abs(int(out[int(PORTRAIT_LANDMARKS[2, 1]), int(PORTRAIT_LANDMARKS[2, 0])]) - 32768) < 300
    # a face half outside the photo (cut by the frame) pastes back without error
    edge = PORTRAIT_LANDMARKS - (PORTRAIT_LANDMARKS[:, 0].min() + 20, 0)
    crop = align.align_face(portrait, edge)
    out = align.paste_back(portrait.copy(), crop, crop.image)
    assert out.shape == portrait.shape


def test_paste_back_bad_arguments(portrait):
    crop = align.align_face(portrait, PORTRAIT_LANDMARKS)
    with pytest.raises(ValueError):
        align.paste_back(portrait.copy(), crop, crop.image, blend=1.5)
    with pytest.raises(ValueError):
        align.paste_back(portrait.copy(), crop, crop.image[:128])


def test_paste_back_keeps_black_and_white_and_toned_prints(portrait):
    """CFRNet gives faces colours; on a B&W or sepia print the face keeps the print's colour."""
    crop_colour = align.align_face(portrait, PORTRAIT_LANDMARKS)
    tinted = crop_colour.image.astype(np.float32) / 255  # a "restoration" with skin colours
    mask = align.face_mask(256, 0.1)
    assert align.chroma_spread(tinted, mask) > align.MONOCHROME_CHROMA_STD  # the colour portrait

    grey = np.repeat(portrait.mean(2, keepdims=True), 3, 2).astype(np.uint8)
    crop = align.align_face(grey, PORTRAIT_LANDMARKS)
    out = align.paste_back(grey.copy(), crop, tinted)
    assert np.abs(out.astype(int) - out[..., :1].astype(int)).max() <= 1  # still grey everywhere
    coloured = align.paste_back(grey.copy(), crop, tinted, keep_monochrome=False)
    assert np.abs(coloured.astype(int) - coloured[..., :1].astype(int)).max() > 10  # what it prevents

    sepia_matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    grey_f = portrait.astype(np.float32).mean(2, keepdims=True).repeat(3, 2)
    sepia = np.clip(0.5 * grey_f + 0.5 * np.clip(grey_f @ sepia_matrix.T, 0, 255), 0, 255).astype(np.uint8)
    crop = align.align_face(sepia, PORTRAIT_LANDMARKS)
    assert align.chroma_spread(crop.image.astype(np.float32) / 255, mask) < align.MONOCHROME_CHROMA_STD
    out = align.paste_back(sepia.copy(), crop, tinted)
    pasted = align.align_face(out, PORTRAIT_LANDMARKS).image.astype(np.float32) / 255
    assert align.chroma_spread(pasted, mask) < align.MONOCHROME_CHROMA_STD  # the sepia tone kept
    # the restored luminance is what lands: the face's luma follows the restoration, not the input
    luma = lambda a: a @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    assert np.corrcoef(luma(pasted)[mask > 0.9], luma(tinted)[mask > 0.9])[0, 1] > 0.95

    # a colour photo is left to the restoration's colours
    a = align.paste_back(portrait.copy(), crop_colour, tinted)
    b = align.paste_back(portrait.copy(), crop_colour, tinted, keep_monochrome=False)
    np.testing.assert_array_equal(a, b)
