"""What the model benchmarks (train_step.py, generate.py) share: the flags that choose the
configurations, pairs of models with the same weights that differ only in whether the cores'
step-invariant gates are factorised, random inputs, and timing in alternating rounds.

A benchmark here times every chosen (representation, dtype policy) twice in one process: once
with `factorise_conditioning` off (each step convolves the broadcast v^q and r, the plain
definition) and once on (gqn_tf/model/conv_lstm.py). The two variants' calls alternate, so load
from other processes and drift of the CPU's clock affect both alike; medians are reported.
"""

import gc
import time

import numpy as np
from absl import flags

REPRESENTATIONS = ("tower", "pool", "pyramid")
POLICIES = ("float32", "mixed_bfloat16")
VARIANTS = {"plain": False, "factorised": True}

flags.DEFINE_string("preset", "paper", "Model preset: paper, small or tiny.")
flags.DEFINE_list("representation", list(REPRESENTATIONS),
                  "Representations to measure, comma separated (tower, pool, pyramid).")
flags.DEFINE_list("mixed_precision", ["float32"],
                  "Keras dtype policies to measure, comma separated: float32, mixed_bfloat16 "
                  "(bf16 uses the AMX units of recent Intel CPUs through oneDNN).")
flags.DEFINE_enum("variants", "both", ["both", *VARIANTS],
                  "Measure the plain and the factorised cores (both), or one of them.")
flags.DEFINE_bool("shared_cores", None, "Override the preset's shared_cores.")
flags.DEFINE_integer("context_size", 5, "Context views per scene (M).")
flags.DEFINE_integer("image_size", None, "Override the preset's frame size (NxN), e.g. 32 for "
                     "the small preset as the bundled model trains.", lower_bound=8)
FLAGS = flags.FLAGS


def check_flags():
    """Raises ValueError naming a representation or policy that does not exist."""
    for name in FLAGS.representation:
        if name not in REPRESENTATIONS:
            raise ValueError(f"--representation {name!r}: use some of {', '.join(REPRESENTATIONS)}.")
    for name in FLAGS.mixed_precision:
        if name not in POLICIES:
            raise ValueError(f"--mixed_precision {name!r}: use some of {', '.join(POLICIES)}.")
    if FLAGS.image_size is not None and FLAGS.image_size % 4:
        raise ValueError(f"--image_size {FLAGS.image_size}: use a multiple of 4 (the cores run "
                         "at a quarter of it).")


def configurations():
    """[(representation, policy, variant names)] chosen by the flags."""
    names = list(VARIANTS) if FLAGS.variants == "both" else [FLAGS.variants]
    return [(representation, policy, names) for policy in FLAGS.mixed_precision
            for representation in FLAGS.representation]


def model_pair(representation, policy, names):
    """{variant name: GQN} with identical weights, built under `policy`, and the GQNConfig."""
    import keras

    from gqn_tf.model import GQN, get_preset

    keras.mixed_precision.set_global_policy(policy)
    overrides = {"representation": representation, "image_size": image_size()}
    if FLAGS.shared_cores is not None:
        overrides["shared_cores"] = FLAGS.shared_cores
    config = get_preset(FLAGS.preset, **overrides)
    models = {}
    for name in names:
        keras.utils.set_random_seed(0)
        models[name] = GQN(config)
        models[name].factorise_conditioning = VARIANTS[name]
    first = next(iter(models.values()))
    for model in models.values():
        model.set_weights(first.get_weights())
    return models, config


def image_size():
    """The frame size the benchmarked models are built for: --image_size or the preset's."""
    from gqn_tf.model import get_preset

    return FLAGS.image_size or get_preset(FLAGS.preset).image_size


def random_batch(batch_size, context_size, image_size, seed=0, backend="tensorflow"):
    """A batch of the model's input layout with uniform frames and normal cameras, as
    TensorFlow constants or, for `backend="jax"`, arrays on JAX's default device."""
    rng = np.random.default_rng(seed)
    b, m, s = batch_size, context_size, image_size
    batch = {
        "context_frames": rng.uniform(size=(b, m, s, s, 3)),
        "context_cameras": rng.normal(size=(b, m, 7)),
        "query_camera": rng.normal(size=(b, 7)),
        "target": rng.uniform(size=(b, s, s, 3)),
    }
    batch = {key: value.astype(np.float32) for key, value in batch.items()}
    if backend == "jax":
        import jax

        return jax.device_put(batch)
    import tensorflow as tf

    return {key: tf.constant(value) for key, value in batch.items()}


def alternate(calls, rounds, label):
    """{name: (warm-up seconds, [seconds per round])}: each of `calls` ({name: fn}) once to
    warm up (tracing), then `rounds` rounds calling each in turn. Prints every round."""
    timings = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        timings[name] = (time.perf_counter() - start, [])
    for i in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            timings[name][1].append(time.perf_counter() - start)
        line = "  ".join(f"{name} {times[-1]:.3f} s" for name, (_, times) in timings.items())
        print(f"{label} round {i + 1}/{rounds}: {line}", flush=True)
    return timings


def release(models):
    """Frees a finished configuration's models before the next is built."""
    import keras

    models.clear()
    keras.backend.clear_session()
    gc.collect()


def ratios(results, key):
    """{"<representation>/<policy>": factorised / plain of `key`} where both were measured, and
    "pool_over_tower/<policy>": factorised pool / factorised tower (and "…/plain_tower" over
    the plain tower, the function every public port computes)."""
    found = {(r["representation"], r["policy"], r["variant"]): r[key] for r in results}
    out = {}
    for (representation, policy, variant), value in found.items():
        if variant == "factorised" and (representation, policy, "plain") in found:
            out[f"{representation}/{policy}"] = round(
                value / found[representation, policy, "plain"], 3)
    for policy in FLAGS.mixed_precision:
        pool = found.get(("pool", policy, "factorised"))
        for variant, name in (("factorised", "pool_over_tower"), ("plain", "pool_over_plain_tower")):
            tower = found.get(("tower", policy, variant))
            if pool and tower:
                out[f"{name}/{policy}"] = round(pool / tower, 3)
    return out
