"""The whole-photo pipeline on real photos with real ONNX sessions (tiny CFRNet-contract models)."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from app.core import align
from app.core.errors import Cancelled, CfrError, ImageError
from app.core.faces import FaceDetector
from app.core.io import load_image, save_image
from app.core.pipeline import STAGES, Pipeline, RestoreOptions, parse_faces, restore_file
from app.core.restorer import Restorer
from tests.model_factory import make_cfrnet_like


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline_models")


@pytest.fixture(scope="module")
def restorer(model_dir):
    return Restorer(make_cfrnet_like(model_dir / "blur_fp32.onnx", "fp32", strength=0.6), threads=1)


@pytest.fixture(scope="module")
def pipeline(restorer):
    det = FaceDetector()
    yield Pipeline(restorer=restorer, detector=det)
    det.close()


@pytest.fixture(scope="module")
def portrait(test_data):
    return load_image(test_data / "portrait_bopb_old_a.jpg")


@pytest.fixture(scope="module")
def group(test_data):
    return load_image(test_data / "group_greek_immigrants_1905.jpg")


@pytest.fixture(scope="module")
def group_faces(pipeline, group):
    return pipeline.detect(group)


def _outside_all_faces(result, shape, pad=2) -> np.ndarray:
    """Mask of pixels no pasted face can reach (outside every crop's footprint)."""
    mask = np.ones(shape[:2], bool)
    for fr in result.faces:
        if not fr.selected:
            continue
        inv = align.invert(fr.crop.matrix)
        s = fr.crop.size
        pts = align.cv2.transform(np.array([[[0, 0], [s, 0], [0, s], [s, s]]], np.float64), inv)[0]
        x0, y0 = np.floor(pts.min(0)).astype(int) - pad
        x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return mask


def test_real_photo_end_to_end(pipeline, test_data, tmp_path):
    src = test_data / "group_greek_immigrants_1905.jpg"
    dst = tmp_path / "out" / "restored.png"
    dst.parent.mkdir()
    calls = []
    result = restore_file(src, dst, RestoreOptions(k=2), pipeline=pipeline, progress=lambda *a: calls.append(a))
    assert dst.is_file()
    out = load_image(dst)
    photo = load_image(src)
    assert out.rgb.shape == photo.rgb.shape and out.rgb.dtype == np.uint8
    assert len(result.faces) >= 15 and all(f.selected for f in result.faces)
    assert all(len(f.cycles) == 2 for f in result.faces)
    np.testing.assert_array_equal(out.rgb, result.rgb)  # PNG: what was computed is what was written
    # faces changed, everything far from a face untouched
    diff = np.abs(result.rgb.astype(int) - photo.rgb.astype(int)).max(2)
    outside = _outside_all_faces(result, photo.rgb.shape)
    assert outside.mean() > 0.3
    assert diff[outside].max() == 0
    for fr in result.faces[:5]:
        x0, y0, x1, y1 = (int(v) for v in fr.face.box)
        assert diff[y0:y1, x0:x1].mean() > 0.5, "the restored face differs from the original"
    assert set(result.timings) == set(STAGES)
    assert all(v >= 0 for v in result.timings.values())
    assert result.timings["detect"] > 0 and result.timings["restore"] > 0 and result.timings["save"] > 0
    # progress went forward and ended at its total
    assert calls and calls[-1][0] == calls[-1][1]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_paste_back_has_no_seam(pipeline, portrait, restorer):
    """With the real blur model and the pipeline's composite: the difference image (composite −
    photo) fades to zero across the mask boundary with no step, i.e. its gradient in the ring
    where the mask falls off is no larger than inside the face."""
    faces = pipeline.detect(portrait)
    crops = pipeline.align(portrait, faces[:1])
    restored = list(restorer.restore(crops[0].image, 2))[-1]
    composite = pipeline.composite(portrait, crops, [restored])
    d = composite.astype(np.float64).mean(2) - portrait.rgb.astype(np.float64).mean(2)
    gy, gx = np.gradient(d)
    grad = np.hypot(gx, gy)
    # mask weight of every image pixel: the crop mask warped back into the photo
    h, w = d.shape
    weight = align.cv2.warpAffine(align.face_mask(256), align.invert(crops[0].matrix), (w, h))
    ring = (weight > 0.02) & (weight < 0.98)
    inner = weight >= 0.98
    assert ring.sum() > 200 and inner.sum() > 1000
    assert np.percentile(grad[ring], 99) <= np.percentile(grad[inner], 99) + 1.0
    assert np.abs(d[weight == 0]).max() == 0


def test_seam_step_with_a_strong_change():
    """A restored face 30 grey levels brighter (colour matching off, so the change survives) on a
    smooth photo: the difference image rises smoothly from 0 to 30 across the feather band — no
    pixel step anywhere near the full change, as a hard paste would make."""
    yy, xx = np.mgrid[0:400, 0:500].astype(np.float64)
    rgb = np.dstack([60 + 0.2 * xx, 80 + 0.15 * yy, 100 + 0.1 * (xx + yy)]).astype(np.uint8)
    landmarks = align.TEMPLATE_256 * 0.7 + (150, 90)  # a face ~125 px wide: the crop enlarges it
    crop = align.align_face(rgb, landmarks)
    brighter = np.clip(crop.image.astype(np.float32) / 255.0 + 30 / 255.0, 0, 1)
    out = align.paste_back(rgb.copy(), crop, brighter, colour_match=False)
    d = out.astype(np.float64).mean(2) - rgb.astype(np.float64).mean(2)
    h, w = d.shape
    weight = align.cv2.warpAffine(align.face_mask(256), align.invert(crop.matrix), (w, h))
    assert abs(np.median(d[weight > 0.99]) - 30) <= 1
    assert np.abs(d[weight == 0]).max() == 0
    step = max(np.abs(np.diff(d, axis=0)).max(), np.abs(np.diff(d, axis=1)).max())
    # feather band = 0.1 × 256 crop px ≈ 18 image px here; smoothstep's steepest slope is
    # 1.5 / 18 × 30 ≈ 2.5 per pixel, plus 8-bit rounding
    assert step < 5.0, step
    # and a hard paste (no feather) would step by the whole change: the check can fail
    hard = align.paste_back(rgb.copy(), crop, brighter, colour_match=False, feather=0.0)
    dh = hard.astype(np.float64).mean(2) - rgb.astype(np.float64).mean(2)
    assert max(np.abs(np.diff(dh, axis=0)).max(), np.abs(np.diff(dh, axis=1)).max()) > 15


def test_face_selection(pipeline, group_faces):
    faces = group_faces
    n = len(faces)
    assert n >= 15
    assert pipeline.select(faces, RestoreOptions(faces="all")) == list(range(n))
    assert pipeline.select(faces, RestoreOptions(faces="largest")) == [0]
    assert pipeline.select(faces, RestoreOptions(faces=[2, 0, 2, n + 5])) == [0, 2]
    assert pipeline.select(faces, RestoreOptions(faces="0,3")) == [0, 3]
    widths = [f.width for f in faces]
    cut = float(np.median(widths))
    big = pipeline.select(faces, RestoreOptions(min_face=cut))
    assert big and all(widths[i] >= cut for i in big) and len(big) < n
    assert pipeline.select(faces, RestoreOptions(faces=[n - 1], min_face=widths[0] + 1)) == []
    assert pipeline.select([], RestoreOptions(faces="largest")) == []
    with pytest.raises(ValueError):
        parse_faces("first")
    with pytest.raises(ValueError):
        parse_faces([-1])


def test_selection_and_per_face_k_in_run(pipeline, group, group_faces):
    opts = RestoreOptions(k=2, faces=[0, 1, 2], per_face_k={1: 1, 2: 3}, min_face=0)
    result = pipeline.run(group, opts)
    assert [len(f.cycles) for f in result.faces[:4]] == [2, 1, 3, 0]
    assert [f.selected for f in result.faces[:4]] == [True, True, True, False]
    assert len(result.faces) == len(group_faces)
    # a face that is not selected is left exactly as it was
    fr = result.faces[5]
    x0, y0, x1, y1 = (int(round(v)) for v in fr.face.box)
    untouched = _outside_all_faces(result, group.rgb.shape)
    assert untouched[y0:y1, x0:x1].any()
    sel = untouched[y0:y1, x0:x1]
    np.testing.assert_array_equal(result.rgb[y0:y1, x0:x1][sel], group.rgb[y0:y1, x0:x1][sel])
    warn = pipeline.run(group, RestoreOptions(faces=[0, 99], k=1)).warnings
    assert warn and "99" in warn[0]


def test_blend_zero_leaves_the_photo_unchanged(pipeline, portrait):
    result = pipeline.run(portrait, RestoreOptions(k=1, blend=0.0))
    assert result.faces and result.faces[0].selected
    np.testing.assert_array_equal(result.rgb, portrait.rgb)
    half = pipeline.run(portrait, RestoreOptions(k=1, blend=0.5)).rgb.astype(int)
    full = pipeline.run(portrait, RestoreOptions(k=1, blend=1.0)).rgb.astype(int)
    orig = portrait.rgb.astype(int)
    # blend 0.5 lies halfway between the original and the full restoration (±1 for rounding)
    assert np.abs(half - (orig + full) / 2).max() <= 1.0
    assert np.abs(full - orig).max() > 5
    with pytest.raises(CfrError):
        pipeline.run(portrait, RestoreOptions(blend=1.5))


def test_cancel_raises_and_writes_nothing(pipeline, test_data, tmp_path):
    dst = tmp_path / "never.jpg"
    stop = threading.Event()

    def progress(done, total, message):
        if message.startswith("Restoring"):
            stop.set()  # cancel while the first face is being restored

    with pytest.raises(Cancelled):
        restore_file(test_data / "group_greek_immigrants_1905.jpg", dst, RestoreOptions(k=3),
                     pipeline=pipeline, progress=progress, cancel=stop)
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either
    with pytest.raises(Cancelled):
        pipeline.run(load_image(test_data / "portrait_bopb_old_a.jpg"), cancel=lambda: True)


def test_no_faces_writes_the_photo_unchanged(pipeline, tmp_path):
    src = tmp_path / "wall.png"
    rng = np.random.default_rng(1)
    wall = (rng.random((300, 400, 3)) * 40 + 100).astype(np.uint8)
    Image.fromarray(wall).save(src)
    dst = tmp_path / "wall_restored.png"
    result = restore_file(src, dst, pipeline=pipeline)
    assert result.faces == []
    np.testing.assert_array_equal(np.array(Image.open(dst)), wall)


def test_existing_output_is_refused_before_the_work(pipeline, test_data, tmp_path):
    dst = tmp_path / "taken.jpg"
    dst.write_bytes(b"keep me")
    with pytest.raises(ImageError, match="already exists"):
        restore_file(test_data / "portrait_bopb_old_a.jpg", dst, pipeline=pipeline)
    assert dst.read_bytes() == b"keep me"


def test_sixteen_bit_with_alpha_round_trip(pipeline, portrait, tmp_path):
    """A 16-bit RGBA PNG keeps 16 bits and its alpha; the face is restored."""
    rgb16 = portrait.rgb.astype(np.uint16) * 257
    alpha = np.full(rgb16.shape[:2], 65535, np.uint16)
    alpha[:20] = 0  # a transparent band at the top
    src = tmp_path / "portrait16.png"
    save_image(src, np.dstack([rgb16, alpha]))
    dst = tmp_path / "portrait16_restored.png"
    result = restore_file(src, dst, RestoreOptions(k=1), pipeline=pipeline)
    assert result.faces and result.rgb.dtype == np.uint16
    out = load_image(dst)
    assert out.rgb.dtype == np.uint16 and out.alpha is not None
    np.testing.assert_array_equal(out.alpha, alpha)
    assert np.abs(out.rgb.astype(int) - rgb16.astype(int)).max() > 5 * 257


def _tiny_upscaler(path, scale=2):
    """A real ×2 'SESR' ONNX (N×1×H×W luma → N×1×2H×2W): a 1×1 conv to 4 channels + DepthToSpace,
    i.e. nearest-neighbour upscaling."""
    w = np.ones((scale * scale, 1, 1, 1), np.float32)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, "H2", "W2"])
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("DepthToSpace", ["c"], ["output"], blocksize=scale),
    ]
    g = helper.make_graph(nodes, "nn_up", [inp], [out], [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    entry = m.metadata_props.add()
    entry.key, entry.value = "scale", str(scale)
    onnx.save(m, str(path))
    return path


def test_upscale_then_restore(pipeline, portrait, model_dir):
    up_path = _tiny_upscaler(model_dir / "nn_x2.onnx")
    result = pipeline.run(portrait, RestoreOptions(k=1, upscale=2, upscale_model=up_path))
    h, w = portrait.rgb.shape[:2]
    assert result.rgb.shape == (2 * h, 2 * w, 3)
    assert result.timings["upscale"] > 0
    plain = pipeline.run(portrait, RestoreOptions(k=1))
    big_face, face = result.faces[0].face, plain.faces[0].face
    assert big_face.width == pytest.approx(2 * face.width, rel=1e-6)
    np.testing.assert_allclose(big_face.landmarks, (face.landmarks + 0.5) * 2 - 0.5)
    # the crop is cut from the upscaled photo: half the scale of the original's crop
    assert result.faces[0].crop.scale == pytest.approx(plain.faces[0].crop.scale / 2, rel=1e-6)
    # far from the face the output is the upscaled photo
    outside = _outside_all_faces(result, result.rgb.shape)
    plain_up = pipeline.upscaler.upscale(portrait.rgb)
    np.testing.assert_array_equal(result.rgb[outside], plain_up[outside])
    with pytest.raises(CfrError):
        pipeline.run(portrait, RestoreOptions(upscale=3))
    with pytest.raises(CfrError, match="×4"):
        pipeline.run(portrait, RestoreOptions(upscale=4, upscale_model=up_path))
