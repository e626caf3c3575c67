#!/usr/bin/env bash
# Set up CFR Studio on a fresh machine: the system libraries Qt needs, a virtual environment in
# .venv, and the package with its extras. Safe to run again: it only adds what is missing.
#   scripts/setup.sh            the application and the test tools
#   CFR_EXTRAS=dev scripts/setup.sh   without the training extra (no torch)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${CFR_EXTRAS:-dev,training}"

# Qt (offscreen or under X) needs these shared libraries; install the missing ones when we can.
apt_packages=(libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-cursor0)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system libraries: ${missing[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: warning: missing system libraries (install them with your package manager): ${missing[*]}" >&2
  fi
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras//,/_}
if [ ! -f "$stamp" ]; then
  echo "setup: installing cfr-studio[$extras] into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]" 2>&1 \
    | grep -vE '^WARNING: Location|BuildBackendWarning|^\s*(!!|\*+|$)' || true
  .venv/bin/python -m pip check
  .venv/bin/python -c "import app, cv2, mediapipe, onnxruntime" # fail here, not halfway through
  rm -f .venv/.installed-*
  touch "$stamp"
fi
