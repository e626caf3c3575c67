"""The restorer with real ONNX Runtime sessions on tiny CFRNet-contract models (tests/model_factory)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from app.core import restorer as restorer_mod
from app.core.errors import Cancelled, ModelError
from app.core.restorer import AUTO_THRESHOLD, MAX_AUTO_CYCLES, Restorer, default_model_path, parse_k
from tests.model_factory import make_cfrnet_like


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "fp32": make_cfrnet_like(d / "blur_fp32.onnx", "fp32", strength=0.5, tone=0.01),
        "int8": make_cfrnet_like(d / "blur_int8.onnx", "int8", strength=0.5, tone=0.01),
        # weak blur, strong pull: reaches its fixed point in about five cycles
        "conv": make_cfrnet_like(d / "conv_fp32.onnx", "fp32", strength=0.05, pull=0.6),
        "dir": d,
    }


@pytest.fixture(scope="module")
def face(test_data):
    """A real face, 256×256 uint8 (the fixture portrait, resized: alignment is not under test)."""
    im = Image.open(test_data / "portrait_bopb_old_a.jpg").convert("RGB")
    w, h = im.size
    side = min(w, h)
    return np.array(im.crop((0, 0, side, side)).resize((256, 256), Image.LANCZOS))


def _ref_cycle(model_path, x):
    """One cycle straight through ONNX Runtime, for comparison."""
    from app.core.onnx_session import OnnxModel

    m = OnnxModel(model_path, threads=1)
    return m.run1(x.transpose(2, 0, 1)[None].astype(np.float32))[0].transpose(1, 2, 0)


def test_cycles_yielded_one_at_a_time_in_order(models, face):
    r = Restorer(models["fp32"], threads=1)
    gen = r.restore(face, 3)
    first = next(gen)  # the first cycle exists before the second is asked for
    assert first.shape == (256, 256, 3) and first.dtype == np.float32
    np.testing.assert_allclose(first, np.clip(_ref_cycle(models["fp32"], face / 255.0), 0, 1), atol=1e-5)
    second = next(gen)
    np.testing.assert_allclose(second, np.clip(_ref_cycle(models["fp32"], first), 0, 1), atol=1e-5)
    third = next(gen)
    with pytest.raises(StopIteration):
        next(gen)
    # each cycle changes the face, and by less each time (the model converges)
    d1 = np.abs(first - face / 255.0).mean()
    d2 = np.abs(second - first).mean()
    d3 = np.abs(third - second).mean()
    assert d1 > d2 > d3 > 0


def test_output_contract(models, face):
    r = Restorer(models["fp32"], threads=1)
    for crop in (face, face.astype(np.uint16) * 257, face.astype(np.float32) / 255.0):
        outs = list(r.restore(crop, 2))
        assert len(outs) == 2
        for o in outs:
            assert o.shape == (256, 256, 3) and o.dtype == np.float32
            assert o.min() >= 0.0 and o.max() <= 1.0 and np.isfinite(o).all()
    # 8-bit, 16-bit and float inputs of the same face give the same result
    a = list(r.restore(face, 1))[0]
    b = list(r.restore(face.astype(np.uint16) * 257, 1))[0]
    np.testing.assert_allclose(a, b, atol=1e-5)
    # a grey crop is taken as three equal channels
    grey = face.mean(2).astype(np.uint8)
    g = list(r.restore(grey, 1))[0]
    np.testing.assert_allclose(g[..., 0], g[..., 1], atol=1e-6)
    with pytest.raises(ValueError, match="256"):
        list(r.restore(face[:128], 1))


def test_metadata_and_names(models):
    r = Restorer(models["int8"], threads=1)
    assert r.precision == "int8"
    assert r.metadata["name"] == "cfrnet-test"
    for key in ("version", "params", "macs_per_cycle", "recommended_k_psnr", "recommended_k_lpips",
                "template", "trained_on", "licence"):
        assert key in r.metadata
    assert "INT8" in r.name
    assert Restorer(models["fp32"]).precision == "fp32"


def test_auto_stops_at_the_fixed_point(models, face):
    r = Restorer(models["conv"], threads=1)
    outs = list(r.restore(face, "auto"))
    assert 2 <= len(outs) < MAX_AUTO_CYCLES
    prev = face / 255.0
    changes = []
    for o in outs:
        changes.append(float(np.abs(o - prev).mean()))
        prev = o
    assert changes[-1] < AUTO_THRESHOLD <= min(changes[:-1])
    # a model that never settles within the threshold is stopped at MAX_AUTO_CYCLES
    slow = Restorer(models["fp32"], threads=1)
    assert len(list(slow.restore(face, "auto"))) == MAX_AUTO_CYCLES


def test_int8_and_fp32_interchangeable(models, face):
    f = list(Restorer(models["fp32"], threads=1).restore(face, 2))
    q = list(Restorer(models["int8"], threads=1).restore(face, 2))
    assert [o.shape for o in f] == [o.shape for o in q]
    diff = np.abs(f[-1] - q[-1])
    assert diff.mean() < 0.01  # same function, quantised
    assert diff.max() > 0  # and really a different graph


def test_restore_batch_matches_single(models, face):
    r = Restorer(models["conv"], threads=1)
    crops = [face, face[::-1].copy(), (face * 0.5).astype(np.uint8)]
    batch = r.restore_batch(crops, 2)
    for crop, out in zip(crops, batch):
        np.testing.assert_allclose(out, list(r.restore(crop, 2))[-1], atol=1e-5)
    # auto: each face stops at its own fixed point, as restore() does
    batch_auto = r.restore_batch(crops, "auto")
    for crop, out in zip(crops, batch_auto):
        np.testing.assert_allclose(out, list(r.restore(crop, "auto"))[-1], atol=1e-5)
    assert r.restore_batch([], 2) == []


def test_cancel_between_cycles(models, face):
    r = Restorer(models["fp32"], threads=1)
    stop = threading.Event()
    got = []
    with pytest.raises(Cancelled):
        for out in r.restore(face, 5, cancel=stop):
            got.append(out)
            stop.set()  # the user presses cancel while cycle 1 is shown
    assert len(got) == 1
    with pytest.raises(Cancelled):
        r.restore_batch([face], 3, cancel=lambda: True)


def test_bad_k():
    assert parse_k("auto") == "auto" and parse_k(" 3 ") == 3 and parse_k(2) == 2
    for bad in (0, -1, "x", 2.5, True, restorer_mod.MAX_CYCLES + 1):
        with pytest.raises(ValueError):
            parse_k(bad)


def test_missing_model_says_how_to_get_it(tmp_path):
    missing = tmp_path / "cfrnet_int8.onnx"
    with pytest.raises(ModelError) as err:
        Restorer(missing)
    text = str(err.value)
    assert str(missing) in text and "missing" in text and "models/cfrnet_int8.onnx" in text


def test_corrupt_model_is_a_clear_error(models, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(models["fp32"].read_bytes()[:300])
    text_file = tmp_path / "notes.onnx"
    text_file.write_text("this is not a model")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for bad in (truncated, text_file, empty):
        with pytest.raises(ModelError) as err:
            Restorer(bad)
        assert str(bad) in str(err.value)
        assert "models/cfrnet_int8.onnx" in str(err.value)


def test_wrong_kind_of_model(tmp_path):
    """An ONNX file that is valid but not a face model (1 channel in, like SESR) is refused."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, "H", "W"])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "y", [inp], [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "luma.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="not a face restoration model"):
        Restorer(path)


def test_default_model_path(monkeypatch, tmp_path):
    monkeypatch.setenv("CFR_MODELS", str(tmp_path))
    assert default_model_path() == tmp_path / "cfrnet_int8.onnx"
    assert default_model_path("fp32") == tmp_path / "cfrnet_fp32.onnx"
    with pytest.raises(ValueError):
        default_model_path("fp16")
