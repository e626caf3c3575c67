"""The desktop bundle, checked where it is cheap: the spec's excludes and collected data, that the
app never imports what the bundle leaves out, resource paths when frozen, and `--selftest` from
source (with the real INT8 model when it is in models/, and with tiny models to show that the
self-test's checks fail when they should). Building the bundle itself (packaging/build.py: a
clean environment plus PyInstaller, many minutes here) runs only with CFR_SLOW=1."""

from __future__ import annotations

import ast
import glob
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "cfr-studio.spec"
REAL_INT8 = ROOT / "models" / "cfrnet_int8.onnx"


def spec_literal(name: str):
    """A literal list assigned at the spec's top level (the spec itself needs PyInstaller to run)."""
    tree = ast.parse(SPEC.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned in {SPEC}")


def mediapipe_includes() -> list[str]:
    tree = ast.parse(SPEC.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "collect_data_files":
            for kw in node.keywords:
                if kw.arg == "includes":
                    return ast.literal_eval(kw.value)
    raise AssertionError("the spec does not collect MediaPipe's data files")


def test_spec_excludes_training_and_heavy_packages_but_keeps_what_the_app_imports():
    excludes = set(spec_literal("EXCLUDES"))
    # DESIGN.md §9: with these the bundle grows from ~0.5 GB to 1.6 GB
    assert {"torch", "jax", "jaxlib", "scipy", "sympy"} <= excludes
    assert {"training", "pytest"} <= excludes
    assert {"PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtWebEngineCore", "PySide6.Qt3DCore",
            "PySide6.QtMultimedia"} <= excludes
    # needed at run time: mediapipe imports pyplot; onnx is the NPU simulator (kept by default)
    for needed in ("matplotlib", "onnx", "onnxruntime", "mediapipe", "cv2", "numpy", "PIL",
                   "PySide6", "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets"):
        assert needed not in excludes


def _imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_app_never_imports_a_package_the_bundle_leaves_out():
    excludes = set(spec_literal("EXCLUDES"))
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for name in _imported_top_names(path):
            parts = name.split(".")
            hit = next((".".join(parts[:i]) for i in range(1, len(parts) + 1)
                        if ".".join(parts[:i]) in excludes), None)
            if hit:
                offenders.append(f"{path.relative_to(ROOT)} imports {name} (excluded: {hit})")
    assert not offenders, "\n".join(offenders)


def test_spec_collects_the_mediapipe_face_models_the_detector_loads():
    spec = importlib.util.find_spec("mediapipe")
    package = Path(spec.origin).parent
    includes = mediapipe_includes()
    found = {pattern: glob.glob(str(package / pattern)) for pattern in includes}
    assert all(found.values()), f"patterns matching nothing: {[p for p, f in found.items() if not f]}"
    names = {Path(f).name for files in found.values() for f in files}
    # the graphs and models that mp.solutions.face_detection (both ranges) and face_mesh open
    assert {"face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite",
            "face_detection_short_range_cpu.binarypb", "face_detection_full_range_cpu.binarypb",
            "face_landmark.tflite", "face_landmark_front_cpu.binarypb"} <= names


def test_spec_filter_drops_translations_and_other_mediapipe_models_only():
    tree = ast.parse(SPEC.read_text())
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_keep")
    space: dict = {}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(SPEC), "exec"), space)
    keep = space["_keep"]
    assert not keep("PySide6/Qt/translations/qtbase_de.qm")
    assert not keep("mediapipe/modules/hand_landmark/hand_landmark_full.tflite")
    assert not keep("cv2/qt/fonts/DejaVuSans.ttf")
    assert keep("mediapipe/modules/face_landmark/face_landmark.tflite")
    assert keep("mediapipe/modules/face_detection/face_detection_short_range.tflite")
    assert keep("PySide6/Qt/plugins/platforms/libqxcb.so") and keep("models/cfrnet_int8.onnx")


def test_resource_paths_follow_the_bundle_when_frozen(monkeypatch, tmp_path):
    from app import paths
    from app.core.restorer import default_model_path
    from app.core.upscaler import default_upscaler_path

    monkeypatch.delenv("CFR_MODELS", raising=False)
    assert paths.models_dir() == ROOT / "models"
    assert (paths.resources_dir() / "selftest_solvay1927.jpg").is_file()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.is_frozen()
    assert paths.models_dir() == tmp_path / "models"
    assert paths.resources_dir() == tmp_path / "resources"
    assert default_model_path("int8") == tmp_path / "models" / "cfrnet_int8.onnx"
    assert default_upscaler_path(2).parent == tmp_path / "models"
    monkeypatch.setenv("CFR_MODELS", str(tmp_path / "other"))
    assert default_model_path("fp32") == tmp_path / "other" / "cfrnet_fp32.onnx"


def test_build_installs_the_runtime_requirements_without_training():
    # by file, not by name: `build` is also the name of a PyPI package
    spec = importlib.util.spec_from_file_location("cfr_bundle_build", ROOT / "packaging" / "build.py")
    bundle_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle_build)
    reqs = [r.lower() for r in bundle_build.requirements()]
    assert "pyinstaller==6.22.3" in reqs
    assert not any(r.startswith(("torch", "onnxscript", "scipy", "pytest")) for r in reqs)
    assert any(r.startswith("mediapipe==") for r in reqs) and any(r.startswith("onnxruntime==") for r in reqs)
    assert "pyside6-essentials==6.12.0" not in reqs  # the known-bad Qt binding is never bundled


def run_selftest(*args: str, env_extra: dict | None = None, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if k != "CFR_MODELS"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "app.cli", "--selftest", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not REAL_INT8.is_file(), reason="models/cfrnet_int8.onnx (the trained INT8 CFRNet) is not in "
                    "models/ yet; the self-test with tiny models below still runs")
def test_selftest_passes_from_source_with_the_real_int8_model():
    done = run_selftest()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "selftest: passed" in done.stdout
    assert f"from {REAL_INT8}" in done.stdout


def _identity_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    from tests.model_factory import _set_metadata, contract_metadata

    shape = ["N", 3, 256, 256]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _set_metadata(model, contract_metadata(model, "int8", "identity"))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.model_factory import make_cfrnet_like

    folder = tmp_path_factory.mktemp("selftest-models")
    return {
        "int8": make_cfrnet_like(folder / "cfrnet_int8.onnx", precision="int8", strength=0.5),
        "fp32": make_cfrnet_like(folder / "cfrnet_fp32.onnx", precision="fp32", strength=0.5),
        # a model whose faces come out far too dark: it runs, but its output is wrong
        "broken": make_cfrnet_like(folder / "broken" / "cfrnet_int8.onnx", precision="int8", tone=-0.6),
        # an untrained export: it gives every face back as it came
        "identity": _identity_model(folder / "identity" / "cfrnet_int8.onnx"),
    }


def test_selftest_passes_with_a_working_int8_model_found_through_models_dir(tiny_models):
    done = run_selftest(env_extra={"CFR_MODELS": str(tiny_models["int8"].parent)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 faces found, 4 restored" in done.stdout
    assert "selftest: passed" in done.stdout


def test_selftest_fails_with_a_message_when_the_model_is_missing_or_not_int8(tiny_models, tmp_path):
    missing = run_selftest("--model", str(tmp_path / "nowhere.onnx"))
    assert missing.returncode == 1
    assert "FAILED" in missing.stderr and "nowhere.onnx" in missing.stderr and "missing" in missing.stderr
    fp32 = run_selftest("--model", str(tiny_models["fp32"]))
    assert fp32.returncode == 1
    assert "INT8" in fp32.stderr and "'fp32'" in fp32.stderr


def test_selftest_fails_when_the_model_output_is_wrong(tiny_models):
    done = run_selftest("--model", str(tiny_models["broken"]))
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr and "does not resemble its input" in done.stderr


def test_selftest_fails_when_the_model_gives_the_faces_back_unchanged(tiny_models):
    done = run_selftest("--model", str(tiny_models["identity"]))
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr and "untrained or identity model" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CFR_SLOW") != "1", reason="builds the bundle (clean venv + PyInstaller: "
                    "many minutes on this machine); set CFR_SLOW=1")
def test_build_makes_a_bundle_whose_selftest_passes():
    done = subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (ROOT / "dist" / "cfr-studio" / "cfr-studio").is_file()
    assert "selftest: passed" in done.stdout + done.stderr
