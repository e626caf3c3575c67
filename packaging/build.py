"""Build the desktop bundle: `python packaging/build.py` → dist/cfr-studio/ (run dist/cfr-studio/cfr-studio).

1. A clean virtual environment in build/bundle-venv with the app's runtime requirements (read
   from pyproject.toml, no training extra: no torch) and PyInstaller. It is reused while the
   requirements stay the same (a hash of them is stored in it), so a rebuild skips the download.
2. The app itself is installed into it without dependencies (so the bundle carries its package
   metadata: `cfr-studio --version`); the code PyInstaller freezes is the working tree's `app/`.
3. PyInstaller with packaging/cfr-studio.spec (onedir; `--portable` also makes the one-file
   dist/cfr-studio-portable).
4. The frozen `dist/cfr-studio/cfr-studio --selftest --processes --gui` must pass (exit 0), else
   the build fails: a photo through the real pipeline and INT8 model, a two-process batch, and
   the main window opened offscreen.
5. Prints the bundle's size and the time each step took.

    python packaging/build.py [--portable] [--without-onnx] [--skip-selftest] [--fresh-venv]

`--without-onnx` leaves the onnx package out (the device panel then says the NPU simulator is not
part of the build, `device-report` is missing, and the self-test fails on it: use it with
--skip-selftest); it exists to measure what onnx costs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "bundle-venv"
WORK = ROOT / "build" / "pyinstaller"
DIST = ROOT / "dist"
SPEC = ROOT / "packaging" / "cfr-studio.spec"
PYINSTALLER = "pyinstaller==6.22.3"
STAMP = ".cfr-bundle-requirements"
# Pins known to break the frozen app, and what to install instead until pyproject.toml changes.
# PySide6(-Essentials) 6.12.0 drops a reference to None on every void Qt call under Python 3.11
# and the GUI aborts after a few thousand calls ("deallocating None"); 6.11.3 does not.
KNOWN_BAD = {"pyside6-essentials==6.12.0": "PySide6-Essentials==6.11.3"}


def requirements() -> list[str]:
    """The app's runtime requirements (pyproject's [project] dependencies) and the build tools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = []
    for req in project["dependencies"]:
        better = KNOWN_BAD.get(req.replace(" ", "").lower())
        if better:
            print(f"build: pyproject.toml asks for {req}, which breaks the GUI; installing {better}")
        reqs.append(better or req)
    return reqs + [PYINSTALLER]


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def run(cmd: list, **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_venv(fresh: bool) -> str:
    """Create (or reuse) the clean build environment; returns what was done, in words."""
    reqs = requirements()
    digest = hashlib.sha256(
        "\n".join([sys.version, *reqs]).encode()).hexdigest()[:16]
    stamp = VENV / STAMP
    if not fresh and stamp.is_file() and stamp.read_text().strip() == digest and venv_python().is_file():
        done = "reused"
    else:
        if VENV.exists():
            shutil.rmtree(VENV)
        # without the system's site-packages: only what is listed here goes in
        venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(VENV)
        pip = [venv_python(), "-m", "pip", "--disable-pip-version-check"]
        run(pip + ["install", "-q", *reqs])
        run(pip + ["check"])
        stamp.write_text(digest + "\n")
        done = "created"
    # the app's own metadata (its version) — quick, and redone whenever the version changes
    installed = subprocess.run(
        [venv_python(), "-c", "from importlib.metadata import version; print(version('cfr-studio'))"],
        capture_output=True, text=True).stdout.strip()
    if installed != project_version() or done == "created":
        run([venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
             "--force-reinstall", ROOT])
    return done


def readable_by_all(folder: Path) -> None:
    """Files keep their mode when copied into the bundle; a model saved 0600 would be unreadable
    to every other user of an unpacked bundle. Everything becomes world-readable (folders and
    executables world-executable), nothing world-writable."""
    for p in [folder, *folder.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        extra = 0o055 if (p.is_dir() or mode & 0o100) else 0o044
        os.chmod(p, (mode | extra) & ~0o022)


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (files only; links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portable", action="store_true", help="also build the one-file dist/cfr-studio-portable")
    parser.add_argument("--without-onnx", action="store_true", help="leave onnx (the NPU simulator) out")
    parser.add_argument("--skip-selftest", action="store_true", help="do not run the frozen self-test")
    parser.add_argument("--fresh-venv", action="store_true", help="rebuild build/bundle-venv from scratch")
    args = parser.parse_args(argv)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    t = time.perf_counter()
    what = ensure_venv(args.fresh_venv)
    timings[f"environment ({what})"] = time.perf_counter() - t

    env = dict(os.environ)
    env["CFR_BUNDLE_PORTABLE"] = "1" if args.portable else "0"
    env["CFR_BUNDLE_ONNX"] = "0" if args.without_onnx else "1"
    env.pop("CFR_MODELS", None)  # the bundle ships models/; a developer's override must not leak in
    t = time.perf_counter()
    run([venv_python(), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", DIST, "--workpath", WORK, SPEC], cwd=ROOT, env=env)
    timings["PyInstaller"] = time.perf_counter() - t

    exe = DIST / "cfr-studio" / "cfr-studio"
    if not exe.is_file():
        print(f"build: FAILED: {exe} was not made", file=sys.stderr)
        return 1
    # beside the executable: the menu entry installer (the .desktop file and icon are in resources/)
    shutil.copy2(ROOT / "packaging" / "install-desktop-entry.sh", DIST / "cfr-studio")
    readable_by_all(DIST / "cfr-studio")
    if not args.skip_selftest:
        t = time.perf_counter()
        # a clean environment: no PYTHONPATH or CFR_MODELS from the shell may help the frozen app
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CFR_", "VIRTUAL_ENV"))}
        code = subprocess.run([exe, "--selftest", "--processes", "--gui"], env=clean).returncode
        timings["frozen --selftest"] = time.perf_counter() - t
        if code != 0:
            print(f"build: FAILED: the frozen self-test exited {code}", file=sys.stderr)
            return 1
    total = time.perf_counter() - t0

    print("\nbuild: done")
    for name, seconds in timings.items():
        print(f"  {name:<34} {seconds:7.1f} s")
    print(f"  {'total':<34} {total:7.1f} s")
    size = du(DIST / "cfr-studio")
    print(f"  bundle dist/cfr-studio/             {human(size)} ({size} bytes)")
    if args.portable:
        one = DIST / "cfr-studio-portable"
        if one.is_file():
            print(f"  portable dist/cfr-studio-portable   {human(du(one))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
