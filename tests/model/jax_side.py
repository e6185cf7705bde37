"""The JAX half of tests/model/test_backends.py, run there as a subprocess:

    KERAS_BACKEND=jax python tests/model/jax_side.py WORK_DIR

TensorFlow is made unimportable first, as on a GPU machine without it, so the JAX path of the
model is shown not to need it. For each representation named in WORK_DIR/cases.json, it loads
the weights the TensorFlow side saved (<representation>.weights.h5) and the inputs and noise of
WORK_DIR/inputs.npz, and writes to WORK_DIR/jax_<representation>.npz: the ELBO terms, the
generated images, the gradient of the mean loss for every trainable weight, and for the first
representation also the losses of a few JaxTrainStep updates on the same batch, saving the
trained weights as trained.weights.h5 (which the TensorFlow side loads back), and the seeded
latent noise of a whole global batch and of two of its rows.
"""

import json
import pathlib
import sys

sys.modules["tensorflow"] = None  # any `import tensorflow` now fails
sys.modules["tensorflow_probability"] = None
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from gqn_tf.model import GQN, distributions, get_preset  # noqa: E402
from gqn_tf.training import schedules  # noqa: E402
from gqn_tf.training.jax_step import JaxTrainStep  # noqa: E402

BATCH_KEYS = ("context_frames", "context_cameras", "query_camera", "target")


def _within_model(variable):
    """The weight's path without the model's own name, which Keras numbers per process."""
    return variable.path.split("/", 1)[-1]


def main(work):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    cases = json.loads((work / "cases.json").read_text())
    inputs = dict(np.load(work / "inputs.npz"))
    batch = {key: inputs[key] for key in BATCH_KEYS}
    for index, representation in enumerate(cases["representations"]):
        model = GQN(get_preset("tiny", representation=representation,
                                image_size=cases["image_size"]))
        model.load_weights(work / f"{representation}.weights.h5")
        noise = inputs["noise"]

        def evaluate(values):
            """ELBO terms, generated images and the gradient of the mean loss, in one program."""
            def mean_loss(values):
                with keras.StatelessScope(
                        state_mapping=list(zip(model.trainable_variables, values))):
                    terms = model.elbo_terms(batch, cases["sigma"], 0, noise=noise)
                    generated = model.generate(batch["context_frames"], batch["context_cameras"],
                                               batch["query_camera"], noise=noise)
                return terms["loss"].mean(), (terms, generated)

            return jax.grad(mean_loss, has_aux=True)(values)

        gradients, (terms, generated) = jax.jit(evaluate)(
            [v.value for v in model.trainable_variables])
        out = {f"terms_{k}": np.asarray(v) for k, v in terms.items()}
        out["generated"] = np.asarray(generated)
        for variable, gradient in zip(model.trainable_variables, gradients):
            out[f"gradient/{_within_model(variable)}"] = np.asarray(gradient)
        if index == 0:
            # The noise of a replica's rows is those rows of the whole global batch's noise.
            shape = (2, 4, 4, 2)
            seed = np.array([7, 3], np.int32)
            whole = distributions.latent_noise(seed, 2, (6, *shape[1:]))
            rows = distributions.latent_noise(seed, 2, shape, batch_offset=2, global_batch_size=6)
            out["noise_whole"] = np.stack([np.asarray(n) for n in whole])
            out["noise_rows"] = np.stack([np.asarray(n) for n in rows])
            step = JaxTrainStep(model, schedules.ScheduleConfig(lr_initial=1e-3), seed=3)
            out["train_losses"] = np.array([float(step(batch)["loss"])
                                            for _ in range(cases["train_steps"])])
            step.sync()
            model.save_weights(work / "trained.weights.h5")
            after = model.elbo_terms(batch, cases["sigma"], 0, noise=noise)
            out["trained_loss"] = np.asarray(after["loss"])
        np.savez(work / f"jax_{representation}.npz", **out)
        print(f"{representation}: done", flush=True)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
