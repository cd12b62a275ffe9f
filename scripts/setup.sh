#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine: system MPI + build tools, a venv with the
# pinned stack, and Horovod built against TensorFlow 2.15.1 with MPI and Gloo.
# Re-running it is cheap: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CANDLE_VENV:-.venv}
PY=${PYTHON:-python3.11}
WHEELS=${CANDLE_WHEEL_CACHE:-$HOME/.cache/candle/wheels}

need_apt=()
command -v mpirun >/dev/null || need_apt+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/openmpi/include/mpi.h ] || [ -n "$(command -v mpicc || true)" ] || need_apt+=(libopenmpi-dev)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need_apt[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing ${need_apt[*]}; install them (or 'module load' your site MPI) and re-run" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY" >/dev/null || PY=python3
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

stamp="$VENV/.candle-setup"
want=$(cat pyproject.toml scripts/setup.sh benchmarks/candle_benchmarks/*.c | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: up to date ($VENV)"
  exit 0
fi

pip install -q --upgrade pip wheel setuptools
# TF first: Horovod's build imports it.
pip install -q "tensorflow-cpu==2.15.1" "numpy==1.26.4"

if ! "$VENV/bin/python" -c "import horovod.tensorflow as h; assert h.mpi_built()" 2>/dev/null; then
  mkdir -p "$WHEELS"
  whl=$(ls "$WHEELS"/horovod-0.28.1-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    echo "setup: building horovod 0.28.1 against TF 2.15.1 + MPI (about 3 minutes)"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" horovod==0.28.1
    whl=$(ls "$WHEELS"/horovod-0.28.1-*.whl | head -1)
  fi
  pip install -q --no-deps "$whl"
  pip install -q cloudpickle psutil packaging
fi

pip install -q -e ".[mpi,dev]"
# sampler: gp needs PyTorch; the CPU build (about 190 MB) rather than PyPI's CUDA one.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  torch_whl=$(ls /opt/wheels/torch-*+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
  if [ -n "$torch_whl" ]; then
    pip install -q "$torch_whl"
  elif [ "${CANDLE_WITH_TORCH:-0}" = 1 ]; then
    pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  else
    echo "setup: no PyTorch (only sampler: gp needs it); CANDLE_WITH_TORCH=1 installs the CPU build"
  fi
fi
"$VENV/bin/python" -c "import tensorflow, horovod.tensorflow as h, mpi4py, optuna; assert h.mpi_built()"
echo "$want" > "$stamp"
echo "setup: ready ($VENV)"
