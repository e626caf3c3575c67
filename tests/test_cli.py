"""`cfr-studio restore` and `cfr-studio batch` on real files, with a tiny real ONNX model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.commands.batch import ProgressBar
from app.core.io import load_image
from app.core.restorer import default_model_path
from tests.model_factory import make_cfrnet_like

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = "portrait_bopb_old_a.jpg"
TWO_FACES = "gui_two_faces_bopb_scratch_d.jpg"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_cfrnet_like(tmp_path_factory.mktemp("cli_model") / "tiny.onnx", "fp32", strength=0.6)


@pytest.fixture()
def portrait(tmp_path, test_data):
    p = tmp_path / "grandma.jpg"
    shutil.copy(test_data / PORTRAIT, p)
    return p


def _diff(a: Path, b: Path) -> float:
    return float(np.abs(load_image(a).rgb.astype(int) - load_image(b).rgb).mean())


def test_restore_default_output_name(portrait, model, capsys):
    assert main(["restore", str(portrait), "--model", str(model), "--threads", "1"]) == 0
    out = portrait.with_name("grandma_restored.jpg")
    assert out.is_file()
    line = capsys.readouterr().out.strip()
    assert line.startswith("1 of 1 faces restored (k=2") and str(out) in line
    assert _diff(portrait, out) > 0.2
    # run again: the output exists and is not replaced without --overwrite
    before = out.read_bytes()
    assert main(["restore", str(portrait), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "grandma_restored.jpg" in err
    assert out.read_bytes() == before
    assert main(["restore", str(portrait), "--model", str(model), "--overwrite", "--k", "1"]) == 0


def test_restore_options(portrait, model, tmp_path, capsys):
    out = tmp_path / "blend0.png"
    assert main(["restore", str(portrait), "-o", str(out), "--model", str(model), "--blend", "0"]) == 0
    assert _diff(portrait, out) < 0.5  # blend 0: the original (re-encoded from JPEG to PNG)
    assert load_image(out).meta.format == "PNG"
    out = tmp_path / "auto.jpg"
    assert main(["restore", str(portrait), "-o", str(out), "--model", str(model), "--k", "auto",
                 "--faces", "largest"]) == 0
    assert "k=auto (" in capsys.readouterr().out
    out = tmp_path / "noface_index.jpg"
    assert main(["restore", str(portrait), "-o", str(out), "--model", str(model), "--faces", "5"]) == 0
    assert "face number" in capsys.readouterr().err


def test_restore_photo_without_faces_is_written_unchanged(tmp_path, model, capsys):
    y, x = np.mgrid[0:100, 0:150]
    src = tmp_path / "sky.png"
    Image.fromarray(np.dstack([x, y, x + y]).astype(np.uint8)).save(src)
    out = tmp_path / "sky_out.png"
    assert main(["restore", str(src), "-o", str(out), "--model", str(model)]) == 0
    assert "no faces found" in capsys.readouterr().err
    assert _diff(src, out) == 0.0


def test_restore_bad_inputs(tmp_path, model, capsys):
    text = tmp_path / "letter.jpg"
    text.write_text("Dear Mary")
    assert main(["restore", str(text), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cfr-studio restore: error:") and "letter.jpg" in err and "not an image" in err
    assert not (tmp_path / "letter_restored.jpg").exists()
    assert main(["restore", str(tmp_path / "nothere.jpg"), "--model", str(model)]) == 1
    assert "does not exist" in capsys.readouterr().err
    src = tmp_path / "keep.jpg"
    shutil.copy(text, src)
    for extra in ([], ["--overwrite"]):
        assert main(["restore", str(src), "-o", str(src), "--model", str(model), *extra]) == 1
        assert "never overwritten" in capsys.readouterr().err
    assert main(["restore", str(src), "-o", str(tmp_path / "x.gif"), "--model", str(model)]) == 1
    assert ".jpg, .png" in capsys.readouterr().err


def test_restore_missing_or_corrupt_model(portrait, tmp_path, capsys):
    assert main(["restore", str(portrait), "--model", str(tmp_path / "gone.onnx")]) == 1
    err = capsys.readouterr().err
    assert "gone.onnx" in err and "missing" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    assert main(["restore", str(portrait), "--model", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.onnx" in err and "damaged" in err
    if not default_model_path("int8").exists():
        # the default model is not in models/ (yet): the message says which file and how to get it
        assert main(["restore", str(portrait)]) == 1
        err = capsys.readouterr().err
        assert "cfrnet_int8.onnx" in err and "missing" in err and "git checkout" in err


@pytest.mark.parametrize("bad", [["--k", "0"], ["--k", "many"], ["--blend", "2"], ["--faces", "x"]])
def test_restore_bad_arguments(portrait, model, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["restore", str(portrait), "--model", str(model), *bad])
    assert exc.value.code == 2
    assert bad[0] in capsys.readouterr().err


def _album(root: Path, test_data: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    shutil.copy(test_data / PORTRAIT, root / "a.jpg")
    shutil.copy(test_data / TWO_FACES, root / "sub" / "b.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def test_batch_command(tmp_path, test_data, model, capsys):
    album = _album(tmp_path / "album", test_data)
    out = tmp_path / "out"
    code = main(["batch", str(album), str(out), "--model", str(model), "--recursive",
                 "--workers", "2", "--k", "1"])
    assert code == 0  # a bad file does not fail the batch
    cap = capsys.readouterr()
    assert "3 photos: 2 restored, 1 failed" in cap.out and str(out) in cap.out
    assert "failed: broken.jpg" in cap.err and "[3/3]" in cap.err  # progress lines (not a TTY)
    assert (out / "a.jpg").is_file() and (out / "sub" / "b.jpg").is_file()
    # again: resumes (skips what is done), still exit 0
    assert main(["batch", str(album), str(out), "--model", str(model), "-r", "-q"]) == 0
    assert "2 skipped" in capsys.readouterr().out


def test_batch_failures(tmp_path, model, capsys):
    album = tmp_path / "bad"
    album.mkdir()
    (album / "x.jpg").write_bytes(b"")
    assert main(["batch", str(album), str(tmp_path / "o"), "--model", str(model), "-q"]) == 1
    assert "every photo failed" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", str(empty), str(tmp_path / "o2"), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert "No photos" in err and "add --recursive" in err
    assert main(["batch", str(tmp_path / "nowhere"), str(tmp_path / "o3"), "--model", str(model)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_progress_bar_on_a_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = ProgressBar(s, width=60)
    bar(1, 4, "a.jpg: restored (1 faces)")
    bar(4, 4, "d.jpg: restored (2 faces)")
    bar.close()
    text = s.getvalue()
    assert text.count("\r") == 2 and "[######" in text and "4/4 100%" in text and text.endswith("\n")


def test_python_dash_m_entry_point(portrait, model, tmp_path):
    out = tmp_path / "via_module.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "restore", str(portrait), "-o", str(out), "--model", str(model)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "faces restored" in proc.stdout and out.is_file()
    # MediaPipe's native start-up chatter is kept off the terminal (app.core.native_log)
    for chatter in ("XNNPACK delegate", "absl::InitializeLog", "inference_feedback_manager"):
        assert chatter not in proc.stderr, proc.stderr


def test_batch_ctrl_c_stops_cleanly_and_resumes(tmp_path, test_data, model):
    import json
    import signal
    import time

    album = tmp_path / "album"
    album.mkdir()
    for i in range(20):
        shutil.copy(test_data / PORTRAIT, album / f"p{i:02d}.jpg")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "app.cli", "batch", str(album), str(out), "--model", str(model), "--k", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "cfr-manifest.json"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(manifest.read_text())["counts"]["done"] >= 1:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the user presses Ctrl-C once
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "run the same command again" in stderr
    done = sorted(p.name for p in out.glob("*.jpg"))
    assert 1 <= len(done) < 20
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written file
    # the same command again finishes the rest
    proc = subprocess.run(cmd + ["-q"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(done)} skipped" in proc.stdout
    assert len(list(out.glob("*.jpg"))) == 20


@pytest.mark.parametrize("family", ["sesr", "falsr"])
def test_restore_with_upscale(portrait, model, tmp_path, family):
    """--upscale 2 enlarges the whole photo with the shipped SR model of that family, the faces
    restored at the new size."""
    from app.commands.restore import upscale_model_path

    sr_model = upscale_model_path(family, 2)
    if not sr_model.is_file():
        pytest.skip(f"{sr_model} is not shipped")
    out = tmp_path / f"up_{family}.png"
    assert main(["restore", str(portrait), "-o", str(out), "--model", str(model),
                 "--upscale", "2", "--upscale-model", family, "--threads", "1"]) == 0
    src, dst = load_image(portrait).rgb, load_image(out).rgb
    assert dst.shape[:2] == (src.shape[0] * 2, src.shape[1] * 2)


def test_falsr_refuses_x4(portrait, model, tmp_path, capsys):
    out = tmp_path / "x4.png"
    assert main(["restore", str(portrait), "-o", str(out), "--model", str(model),
                 "--upscale", "4", "--upscale-model", "falsr"]) == 1
    assert "FALSR upscales ×2 only" in capsys.readouterr().err
    assert not out.exists()


def test_quality_option_sets_jpeg_quality(portrait, model, tmp_path):
    sizes = {}
    for q in (60, 95):
        out = tmp_path / f"q{q}.jpg"
        assert main(["restore", str(portrait), "-o", str(out), "--model", str(model),
                     "--quality", str(q), "--threads", "1"]) == 0
        sizes[q] = out.stat().st_size
    assert sizes[60] < 0.8 * sizes[95]
    assert main(["restore", str(portrait), "-o", str(tmp_path / "bad.jpg"), "--model", str(model),
                 "--quality", "20"]) == 1


def test_batch_quality_reaches_the_outputs(tmp_path, test_data, model):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(test_data / PORTRAIT, src / "a.jpg")
    sizes = {}
    for q in (60, 95):
        assert main(["batch", str(src), str(tmp_path / f"out{q}"), "--model", str(model),
                     "--quality", str(q), "-q", "--threads", "1"]) == 0
        sizes[q] = (tmp_path / f"out{q}" / "a.jpg").stat().st_size
    assert sizes[60] < 0.8 * sizes[95]
