#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv/ at the repository root.
# Re-running is fast: each step is skipped when a stamp says it is already done for the
# current requirement files.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  # torch 2.14.1 / torchvision 0.29.1 wheels for Python 3.11 are available locally on our
  # machines; prefer that interpreter so set-up never pulls multi-GB downloads.
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
VENV=.venv
PY=$VENV/bin/python
PIP="$PY -m pip --disable-pip-version-check --quiet"

if [ ! -x "$PY" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
  $PIP install --upgrade "pip>=24" setuptools wheel
fi

stamp() { echo "$VENV/.stamp-$1"; }
key=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16)

if [ ! -f "$(stamp torch)" ]; then
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1"
  $PIP install "torch==2.14.1" "torchvision==0.29.1"
  touch "$(stamp torch)"
fi

if [ ! -f "$(stamp learn2learn)" ]; then
  echo "[setup] building learn2learn 0.2.0"
  # learn2learn 0.2.0 has no wheel for Python >= 3.11 and its sdist ships C sources generated
  # by an old Cython that no longer compile (missing longintrepr.h). Passing the build_ext
  # build option makes setup.py run Cython 3 again, which regenerates working sources.
  # torch is pinned so that its dependency resolution can never pick another torch release.
  $PIP install "cython>=3" "numpy" "torch==2.14.1" "torchvision==0.29.1"
  $PIP install "learn2learn==0.2.0" "torch==2.14.1" "torchvision==0.29.1" \
    --config-settings=--build-option=build_ext
  touch "$(stamp learn2learn)"
fi

if [ ! -f "$(stamp "project-$key")" ]; then
  echo "[setup] installing bioplastic (editable) with its dependencies"
  $PIP install -e ".[dev]" "torch==2.14.1" "torchvision==0.29.1"
  rm -f "$VENV"/.stamp-project-*
  touch "$(stamp "project-$key")"
fi
