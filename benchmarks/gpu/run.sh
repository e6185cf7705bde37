#!/usr/bin/env bash
# The paper configuration's training step on JAX, on a GPU machine without TensorFlow:
# installs the carried wheels (fetch_wheels.sh) into a folder of their own, then times
# benchmarks/train_step.py --backend jax at B = 36, M = 5, pool representation, float32 and
# bf16 (Keras' mixed_bfloat16). Prints the devices, every round, and last one JSON line.
#
#   bash benchmarks/gpu/run.sh [more train_step.py flags, which override these]
#
# GQN_WHEELS (default .whl) names the wheel folder, GQN_SITE (default /tmp/gqn_site) where
# they go; without wheels the Python environment as it is must have Keras.
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels=${GQN_WHEELS:-.whl}
site=${GQN_SITE:-/tmp/gqn_site}
python=${PYTHON:-python3}
if compgen -G "$wheels/*.whl" >/dev/null; then
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
"$python" -c 'import jax, keras; print("jax", jax.__version__, "keras", keras.__version__, "devices", jax.devices())'
exec "$python" benchmarks/train_step.py --backend jax --preset paper --representation pool \
  --batch_size 36 --context_size 5 --variants factorised \
  --mixed_precision float32,mixed_bfloat16 --steps 10 "$@"
