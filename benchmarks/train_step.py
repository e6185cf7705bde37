"""Seconds per training step (forward, backward, Adam update) of a GQN configuration, with the
cores' step-invariant gates computed plainly and factorised (benchmarks/compare.py).

    python benchmarks/train_step.py --preset paper --batch_size 4 --context_size 5 --steps 5 \
        --representation tower,pool,pyramid --mixed_precision float32,mixed_bfloat16

For each representation and dtype policy, two models with the same weights (plain and
factorised) take one warm-up step each (tracing, and XLA compilation with --jit_compile), timed
apart, then --steps steps in alternation on the same random batch. The last line printed is
JSON: {"results": [{representation, policy, variant, step_s, images_per_s, warmup_s}, ...],
"ratios": {"<representation>/<policy>": factorised / plain, "pool_over_tower/<policy>": ...}}.

With --backend jax the same models train with `JaxTrainStep` (gqn_tf/training/jax_step.py: one
`jax.jit` program per configuration, Adam and the Table S1 schedules inside it) on JAX's default
device; TensorFlow is not imported. benchmarks/gpu/run.sh runs it on a GPU machine:

    KERAS_BACKEND=jax python benchmarks/train_step.py --backend jax --preset paper \
        --representation pool --batch_size 36 --context_size 5 --variants factorised \
        --mixed_precision float32,mixed_bfloat16
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

import compare  # noqa: E402  (benchmarks/compare.py, beside this script)
from gqn_tf import cli  # noqa: E402

flags.DEFINE_integer("batch_size", 4, "Scenes per step.")
flags.DEFINE_integer("steps", 5, "Timed steps of each variant after its warm-up step.")
flags.DEFINE_bool("jit_compile", False, "Compile each replica's forward and backward pass with XLA "
                  "(TensorFlow; JAX always compiles the whole step).")
flags.DEFINE_enum("backend", "tensorflow", ["tensorflow", "jax"],
                  "Keras backend to time: tensorflow (TrainStep, gqn_tf/training/step.py) or jax "
                  "(JaxTrainStep, without TensorFlow).")
FLAGS = flags.FLAGS


def _make_step(model, backend):
    """A function that runs one training step of `model` on a batch and returns its loss."""
    from gqn_tf.training import schedules

    if backend == "jax":
        from gqn_tf.training.jax_step import JaxTrainStep

        step = JaxTrainStep(model)
    else:
        from gqn_tf.training.step import TrainStep

        step = TrainStep(model, schedules.make_optimizer(), FLAGS.batch_size,
                         jit_compile=FLAGS.jit_compile)
    return lambda batch: float(step(batch)["loss"])  # float() waits for the device


def _device(backend):
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    return "tensorflow: cpu"


def main(argv):
    del argv
    if FLAGS.backend == "jax":
        os.environ["KERAS_BACKEND"] = "jax"  # before Keras is first imported
    try:  # Keras imports TensorFlow where it is installed: import it without its start-up lines
        cli.import_tensorflow()
    except ImportError:
        pass  # a GPU machine without TensorFlow
    try:
        compare.check_flags()
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    import keras

    if keras.backend.backend() != FLAGS.backend:
        raise cli.UserError(f"--backend {FLAGS.backend} but Keras runs on "
                            f"{keras.backend.backend()}; set KERAS_BACKEND={FLAGS.backend}.")
    device = _device(FLAGS.backend)
    print(f"backend {FLAGS.backend}, device {device}", flush=True)
    results = []
    for representation, policy, names in compare.configurations():
        models, config = compare.model_pair(representation, policy, names)
        batch = compare.random_batch(FLAGS.batch_size, FLAGS.context_size, config.image_size,
                                     backend=FLAGS.backend)
        steps = {name: _make_step(model, FLAGS.backend) for name, model in models.items()}
        parameters = next(iter(models.values())).count_params()
        print(f"{representation}, {policy}: {config}  parameters: {parameters:,}", flush=True)
        timings = compare.alternate(
            {name: (lambda step=step: step(batch)) for name, step in steps.items()},
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
                      "image_size": compare.image_size(), "jit_compile": FLAGS.jit_compile,
                      "backend": FLAGS.backend, "device": device}))


if __name__ == "__main__":
    cli.run(main)
