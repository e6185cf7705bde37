# Sourced by run.sh and train.sh: installs the carried wheels (fetch_wheels.sh) into a folder of
# their own and puts it on PYTHONPATH; sets the JAX backend. GQN_WHEELS (default .whl) names the
# wheel folder, GQN_SITE (default /tmp/gqn_site) where they go, PYTHON the interpreter; without
# wheels the Python environment as it is must have Keras.
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
