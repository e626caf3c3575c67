"""app.core.batch on real folders: real photos, bad files made in the test, a real ONNX session
(a tiny CFRNet-contract model from tests/model_factory.py) and the real face detector."""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from app.core.batch import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    BatchOptions,
    find_images,
    run_batch,
)
from app.core.errors import CfrError, ModelError
from app.core.io import load_image
from app.core.pipeline import RestoreOptions
from app.core.restorer import Restorer
from tests.model_factory import make_cfrnet_like

PORTRAIT = "portrait_bopb_old_a.jpg"  # one face
TWO_FACES = "gui_two_faces_bopb_scratch_d.jpg"  # two faces


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_cfrnet_like(tmp_path_factory.mktemp("batch_model") / "tiny.onnx", "fp32", strength=0.6)


@pytest.fixture(scope="module")
def restorer(model_path):
    return Restorer(model_path, threads=1)


def _album(root, test_data):
    """A folder as a user might have it: good photos (one in a subfolder, one PNG), a photo with
    no face, and three broken files."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(test_data / PORTRAIT, root / "portrait.jpg")
    (root / "1920s").mkdir(exist_ok=True)
    shutil.copy(test_data / TWO_FACES, root / "1920s" / "two.jpg")
    Image.open(test_data / PORTRAIT).save(root / "portrait_png.png")
    y, x = np.mgrid[0:120, 0:160]
    Image.fromarray(np.dstack([x, y, x + y]).astype(np.uint8)).save(root / "sky.png")  # no face
    (root / "empty.jpg").write_bytes(b"")
    (root / "letter.jpg").write_text("Dear Mary, the photos are in the post.")
    data = (test_data / PORTRAIT).read_bytes()
    (root / "torn.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not an image: must be ignored")
    return root


def _by_input(result):
    return {r.input: r for r in result.records}


def test_find_images(tmp_path, test_data):
    album = _album(tmp_path / "album", test_data)
    top = [p.relative_to(album).as_posix() for p in find_images(album)]
    assert top == ["empty.jpg", "letter.jpg", "portrait.jpg", "portrait_png.png", "sky.png", "torn.jpg"]
    deep = [p.relative_to(album).as_posix() for p in find_images(album, recursive=True)]
    assert "1920s/two.jpg" in deep and len(deep) == 7


def test_mixed_good_and_bad_files(tmp_path, test_data, restorer):
    album = _album(tmp_path / "album", test_data)
    out = tmp_path / "out"
    seen = []
    result = run_batch(album, out, BatchOptions(restore=RestoreOptions(k=2), recursive=True),
                       progress=lambda d, t, m: seen.append((d, t, m)), restorer=restorer)
    rec = _by_input(result)
    assert set(rec) == {"portrait.jpg", "portrait_png.png", "sky.png", "empty.jpg", "letter.jpg",
                        "torn.jpg", "1920s/two.jpg"}
    assert rec["portrait.jpg"].status == "done" and rec["portrait.jpg"].restored >= 1
    assert rec["portrait.jpg"].cycles == [2] * rec["portrait.jpg"].restored
    assert rec["1920s/two.jpg"].status == "done" and rec["1920s/two.jpg"].faces >= 2
    assert rec["sky.png"].status == "done" and rec["sky.png"].faces == 0
    assert any("no faces" in w for w in rec["sky.png"].warnings)
    for bad, words in (("empty.jpg", "empty"), ("letter.jpg", "not an image"), ("torn.jpg", "damaged")):
        assert rec[bad].status == "failed"
        assert bad in rec[bad].error and words in rec[bad].error, rec[bad].error
    assert not result.all_failed

    # the structure is mirrored, the format kept; nothing for the failed files; no temp files
    assert (out / "portrait.jpg").is_file() and (out / "1920s" / "two.jpg").is_file()
    assert (out / "portrait_png.png").is_file() and (out / "sky.png").is_file()
    assert not (out / "empty.jpg").exists() and not (out / "torn.jpg").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    restored = load_image(out / "portrait.jpg").rgb
    original = load_image(album / "portrait.jpg").rgb
    assert restored.shape == original.shape
    assert np.abs(restored.astype(int) - original).mean() > 0.2  # the face was changed

    # progress: one call per file, counting up to the total
    assert seen[-1][0] == seen[-1][1] == 7
    assert [d for d, _, _ in seen[1:]] == list(range(1, 8))

    # the manifest lists every file, with status, faces, k, timings and errors
    doc = json.loads((out / MANIFEST_JSON).read_text())
    assert doc["finished"] is True and doc["counts"] == {"done": 4, "skipped": 0, "failed": 3, "cancelled": 0}
    files = {f["input"]: f for f in doc["files"]}
    assert files["portrait.jpg"]["k"] == "2" and files["portrait.jpg"]["timings"]["detect"] > 0
    assert "empty" in files["empty.jpg"]["error"]
    with open(out / MANIFEST_CSV, newline="") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    assert rows["torn.jpg"]["status"] == "failed" and rows["1920s/two.jpg"]["status"] == "done"
    assert float(rows["portrait.jpg"]["restore_s"]) > 0


def test_resume_skips_what_is_done(tmp_path, test_data, restorer):
    album = _album(tmp_path / "album", test_data)
    out = tmp_path / "out"
    first = run_batch(album, out, BatchOptions(), restorer=restorer)
    stamp = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.jpg")}
    assert first.count("done") == 3
    again = run_batch(album, out, BatchOptions(), restorer=restorer)
    rec = _by_input(again)
    assert {r.status for n, r in rec.items() if n in ("portrait.jpg", "sky.png", "portrait_png.png")} == {"skipped"}
    assert rec["torn.jpg"].status == "failed"  # failures are tried again
    for p, (mtime, data) in stamp.items():
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data


def test_cancel_then_resume(tmp_path, test_data, restorer):
    album = tmp_path / "album"
    album.mkdir()
    for i in range(4):
        shutil.copy(test_data / PORTRAIT, album / f"p{i}.jpg")
    out = tmp_path / "out"
    cancel = threading.Event()

    def progress(done, total, message):
        if done >= 1:  # the user presses Cancel after the first photo
            cancel.set()

    result = run_batch(album, out, BatchOptions(), progress=progress, cancel=cancel, restorer=restorer)
    assert result.count("done") == 1 and result.count("cancelled") == 3 and result.was_cancelled
    assert sorted(p.name for p in out.glob("*.jpg")) == ["p0.jpg"]
    doc = json.loads((out / MANIFEST_JSON).read_text())
    assert doc["counts"]["cancelled"] == 3
    # run again: the rest is done, the first is not redone
    result = run_batch(album, out, BatchOptions(), restorer=restorer)
    assert result.count("skipped") == 1 and result.count("done") == 3
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"p{i}.jpg" for i in range(4)]


def test_cancel_during_a_photo_writes_nothing(tmp_path, test_data, restorer):
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(test_data / TWO_FACES, album / "two.jpg")
    calls = []

    def cancel():  # a callable token: fires once the work has started (between cycles)
        calls.append(1)
        return len(calls) > 3

    result = run_batch(album, tmp_path / "out", BatchOptions(), cancel=cancel, restorer=restorer)
    assert result.records[0].status == "cancelled"
    assert not list((tmp_path / "out").glob("*.jpg"))


def test_output_format_and_existing_policies(tmp_path, test_data, restorer):
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(test_data / PORTRAIT, album / "a.jpg")
    Image.open(test_data / PORTRAIT).save(album / "a.bmp")  # a.jpg and a.bmp both → a.png
    out = tmp_path / "out"
    r1 = run_batch(album, out, BatchOptions(output_format="png"), restorer=restorer)
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["a.png", "a_jpg.png"] and r1.count("done") == 2
    assert load_image(out / "a.png").meta.format == "PNG"

    r2 = run_batch(album, out, BatchOptions(output_format="png", existing="rename"), restorer=restorer)
    assert r2.count("skipped") == 2  # the manifest says both are done: a resume, not new copies
    (out / MANIFEST_JSON).unlink()
    r3 = run_batch(album, out, BatchOptions(output_format="png", existing="rename"), restorer=restorer)
    assert r3.count("done") == 2
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "a_1.png", "a_jpg.png", "a_jpg_1.png"]

    before = (out / "a.png").stat().st_mtime_ns
    r4 = run_batch(album, out, BatchOptions(output_format="png", existing="overwrite"), restorer=restorer)
    assert r4.count("done") == 2 and (out / "a.png").stat().st_mtime_ns != before


def test_two_thread_workers_match_one(tmp_path, test_data, restorer):
    album = _album(tmp_path / "album", test_data)
    one = run_batch(album, tmp_path / "w1", BatchOptions(recursive=True), restorer=restorer)
    two = run_batch(album, tmp_path / "w2", BatchOptions(recursive=True, workers=2), restorer=restorer)
    a, b = _by_input(one), _by_input(two)
    assert {n: r.status for n, r in a.items()} == {n: r.status for n, r in b.items()}
    assert {n: r.faces for n, r in a.items()} == {n: r.faces for n, r in b.items()}
    for name, r in a.items():
        if r.status == "done":
            x = load_image(tmp_path / "w1" / r.output).rgb.astype(int)
            y = load_image(tmp_path / "w2" / b[name].output).rgb.astype(int)
            assert np.abs(x - y).max() <= 1, name


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CFR_SLOW") != "1", reason="process workers start MediaPipe per "
                    "process (~10 s here); set CFR_SLOW=1")
def test_process_workers(tmp_path, test_data, model_path):
    album = _album(tmp_path / "album", test_data)
    result = run_batch(album, tmp_path / "out", BatchOptions(workers=2, parallel="process",
                                                           model_path=model_path))
    assert result.count("done") == 3 and result.count("failed") == 3


def test_every_file_failed(tmp_path, restorer):
    album = tmp_path / "album"
    album.mkdir()
    (album / "a.jpg").write_bytes(b"")
    (album / "b.png").write_text("hello")
    result = run_batch(album, tmp_path / "out", BatchOptions(), restorer=restorer)
    assert result.all_failed and result.count("failed") == 2


def test_whole_batch_errors(tmp_path, test_data, restorer):
    album = _album(tmp_path / "album", test_data)
    with pytest.raises(CfrError, match="does not exist"):
        run_batch(tmp_path / "nowhere", tmp_path / "out", restorer=restorer)
    with pytest.raises(CfrError, match="is the input folder"):
        run_batch(album, album, restorer=restorer)
    with pytest.raises(CfrError, match="skip, overwrite, rename"):
        run_batch(album, tmp_path / "out", BatchOptions(existing="maybe"), restorer=restorer)
    with pytest.raises(ModelError, match=r"missing\.onnx.*missing"):
        run_batch(album, tmp_path / "out", BatchOptions(model_path=tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx"):
        run_batch(album, tmp_path / "out", BatchOptions(model_path=bad))


def test_output_inside_input_is_not_rescanned(tmp_path, test_data, restorer):
    album = tmp_path / "album"
    album.mkdir()
    shutil.copy(test_data / PORTRAIT, album / "p.jpg")
    result = run_batch(album, album / "restored", BatchOptions(recursive=True), restorer=restorer)
    again = run_batch(album, album / "restored", BatchOptions(recursive=True), restorer=restorer)
    assert [r.input for r in result.records] == ["p.jpg"] == [r.input for r in again.records]
