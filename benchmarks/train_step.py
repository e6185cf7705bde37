"""Seconds per training step (forward, backward, Adam update) of a GQN configuration, with the
cores' step-invariant gates computed plainly and factorised (benchmarks/compare.py).

    python benchmarks/train_step.py --preset paper --batch_size 4 --context_size 5 --steps 5 \
        --representation tower,pool,pyramid --mixed_precision float32,mixed_bfloat16

For each representation and dtype policy, two models with the same weights (plain and
factorised) take one warm-up step each (tracing, and XLA compilation with --jit_compile), timed
apart, then --steps steps in alternation on the same random batch. The last line printed is
JSON: {"results": [{representation, policy, variant, step_s, images_per_s, warmup_s}, ...],
"ratios": {"<representation>/<policy>": factorised / plain, "pool_over_tower/<policy>": ...}}.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import compare  # noqa: E402  (benchmarks/compare.py, beside this script)

flags.DEFINE_integer("batch_size", 4, "Scenes per step.")
flags.DEFINE_integer("steps", 5, "Timed steps of each variant after its warm-up step.")
flags.DEFINE_bool("jit_compile", False, "Compile each replica's forward and backward pass with XLA.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from gqn_tf.training import schedules
    from gqn_tf.training.step import TrainStep

    try:
        compare.check_flags()
    except ValueError as error:
        sys.exit(f"error: {error}")
    results = []
    for representation, policy, names in compare.configurations():
        models, config = compare.model_pair(representation, policy, names)
        batch = compare.random_batch(FLAGS.batch_size, FLAGS.context_size, config.image_size)
        steps = {name: TrainStep(model, schedules.make_optimizer(), FLAGS.batch_size,
                                 jit_compile=FLAGS.jit_compile)
                 for name, model in models.items()}
        parameters = next(iter(models.values())).count_params()
        print(f"{representation}, {policy}: {config}  parameters: {parameters:,}", flush=True)
        timings = compare.alternate(
            {name: (lambda step=step: float(step(batch)["loss"])) for name, step in steps.items()},
            FLAGS.steps, f"{representation} {policy}")
        for name, (warmup, times) in timings.items():
            step_s = float(np.median(times))
            results.append({"representation": representation, "policy": policy, "variant": name,
                            "step_s": round(step_s, 4),
                            "images_per_s": round(FLAGS.batch_size / step_s, 3),
                            "warmup_s": round(warmup, 2), "parameters": parameters})
            print(f"{representation} {policy} {name}: median {step_s:.3f} s/step, "
                  f"{FLAGS.batch_size / step_s:.2f} images/s, warm-up {warmup:.2f} s", flush=True)
        del steps
        compare.release(models)
    ratios = compare.ratios(results, "step_s")
    for name, value in ratios.items():
        print(f"ratio {name}: {value}")
    print(json.dumps({"results": results, "ratios": ratios, "preset": FLAGS.preset,
                      "batch_size": FLAGS.batch_size, "context_size": FLAGS.context_size,
                      "jit_compile": FLAGS.jit_compile}))


if __name__ == "__main__":
    app.run(main)
