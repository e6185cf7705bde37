#!/usr/bin/env bash
# The paper configuration's training step on JAX, on a GPU machine without TensorFlow:
# installs the carried wheels (fetch_wheels.sh) into a folder of their own, then times
# benchmarks/train_step.py --backend jax at B = 36, M = 5, pool representation, float32 and
# bf16 (Keras' mixed_bfloat16). Prints the devices, every round, and last one JSON line.
#
#   bash benchmarks/gpu/run.sh [more train_step.py flags, which override these]
#
# GQN_WHEELS, GQN_SITE and PYTHON as in env.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/gpu/env.sh
exec "$python" benchmarks/train_step.py --backend jax --preset paper --representation pool \
  --batch_size 36 --context_size 5 --variants factorised \
  --mixed_precision float32,mixed_bfloat16 --steps 10 "$@"
