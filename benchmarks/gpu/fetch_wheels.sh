#!/usr/bin/env bash
# Downloads the wheels that the JAX benchmark and train_jax.py need on a GPU machine which has
# JAX, NumPy, h5py, Pillow, absl and rich but no Keras, and cannot download: Keras (the
# version requirements.txt pins), namex and optree. About 2 MiB; run here, carry the folder.
#
#   bash benchmarks/gpu/fetch_wheels.sh [FOLDER [PYTHON_VERSION]]   # default .whl 3.12
set -euo pipefail
cd "$(dirname "$0")/../.."
folder=${1:-.whl}
python_version=${2:-3.12}
keras=$(grep -E '^keras==' requirements.txt)
mkdir -p "$folder"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$folder" \
  --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "$keras" namex==0.1.0 optree==0.20.0
ls -1 "$folder"
