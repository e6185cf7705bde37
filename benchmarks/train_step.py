"""Seconds per training step (forward, backward, Adam update) of a GQN configuration.

    python benchmarks/train_step.py --preset paper --batch_size 4 --context_size 5 --steps 5

Random inputs of the configured image size; the first step (tracing, and XLA compilation with
--jit_compile) is timed apart from the rest. The last line printed is JSON.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

flags.DEFINE_string("preset", "paper", "Model preset: paper, small or tiny.")
flags.DEFINE_integer("batch_size", 4, "Scenes per step.")
flags.DEFINE_integer("context_size", 5, "Context views per scene (M).")
flags.DEFINE_integer("steps", 5, "Timed steps after the warm-up step.")
flags.DEFINE_bool("jit_compile", False, "Compile each replica's forward and backward pass with XLA.")
flags.DEFINE_string("mixed_precision", None, "Keras dtype policy, e.g. mixed_bfloat16.")
flags.DEFINE_bool("shared_cores", None, "Override the preset's shared_cores.")
flags.DEFINE_string("representation", None, "Override the preset's representation.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from gqn_tf.model import GQN, get_preset
    from gqn_tf.training import schedules
    from gqn_tf.training.step import TrainStep

    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    overrides = {k: getattr(FLAGS, k) for k in ("shared_cores", "representation")
                 if getattr(FLAGS, k) is not None}
    config = get_preset(FLAGS.preset, **overrides)
    model = GQN(config)
    step = TrainStep(model, schedules.make_optimizer(), FLAGS.batch_size,
                     jit_compile=FLAGS.jit_compile)
    rng = np.random.default_rng(0)
    b, m, s = FLAGS.batch_size, FLAGS.context_size, config.image_size
    batch = {
        "context_frames": tf.constant(rng.uniform(size=(b, m, s, s, 3)), tf.float32),
        "context_cameras": tf.constant(rng.normal(size=(b, m, 7)), tf.float32),
        "query_camera": tf.constant(rng.normal(size=(b, 7)), tf.float32),
        "target": tf.constant(rng.uniform(size=(b, s, s, 3)), tf.float32),
    }
    print(f"config: {config}  parameters: {model.count_params():,}")
    start = time.perf_counter()
    float(step(batch)["loss"])
    warmup = time.perf_counter() - start
    times = []
    for i in range(FLAGS.steps):
        start = time.perf_counter()
        loss = float(step(batch)["loss"])
        times.append(time.perf_counter() - start)
        print(f"step {i + 1}/{FLAGS.steps}: {times[-1]:.3f} s  loss {loss:.1f}", flush=True)
    step_s = float(np.median(times))
    print(f"warm-up step {warmup:.2f} s; median {step_s:.3f} s/step, "
          f"{b / step_s:.2f} images/s (B={b}, M={m}, jit_compile={FLAGS.jit_compile}, "
          f"policy={keras.mixed_precision.global_policy().name})")
    print(json.dumps({"step_s": round(step_s, 4), "images_per_s": round(b / step_s, 3),
                      "warmup_s": round(warmup, 2), "preset": FLAGS.preset,
                      "batch_size": b, "context_size": m, "jit_compile": FLAGS.jit_compile,
                      "parameters": model.count_params()}))


if __name__ == "__main__":
    app.run(main)
