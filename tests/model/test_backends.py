"""The model on two Keras backends: TensorFlow (this process) and JAX (a subprocess running
tests/model/jax_side.py without TensorFlow). Same weights (a .weights.h5 file) and the same
latent noise give the same ELBO terms, generated images and gradients; weights trained by the
JAX step load back here and give the ELBO JAX computed."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.model import GQN, distributions, get_preset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REPRESENTATIONS = ("tower", "pool", "pyramid")
SIGMA = 0.7
TRAIN_STEPS = 8
IMAGE_SIZE = 32  # small, to keep the JAX compilations short



def _noise(model, batch_size, seed=5):
    c = model.gqn_config
    return np.random.default_rng(seed).standard_normal(
        (c.num_layers, batch_size, c.core_size, c.core_size, c.z_channels)).astype(np.float32)


@pytest.fixture(scope="module")
def both_sides(tmp_path_factory, make_batch):
    """{representation: (TF model, JAX outputs)} and the shared inputs, after one JAX run."""
    work = tmp_path_factory.mktemp("backends")
    batch = make_batch(batch_size=3, context_size=2, image_size=IMAGE_SIZE, seed=11)
    models = {}
    for i, representation in enumerate(REPRESENTATIONS):
        keras.utils.set_random_seed(i)
        models[representation] = model = GQN(get_preset("tiny", representation=representation, image_size=IMAGE_SIZE))
        model.save_weights(work / f"{representation}.weights.h5")
    noise = _noise(models["tower"], 3)
    np.savez(work / "inputs.npz", noise=noise, **batch)
    (work / "cases.json").write_text(json.dumps(
        {"representations": REPRESENTATIONS, "sigma": SIGMA, "train_steps": TRAIN_STEPS,
         "image_size": IMAGE_SIZE}))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tests/model/jax_side.py"),
                             str(work)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {r: dict(np.load(work / f"jax_{r}.npz")) for r in REPRESENTATIONS}
    return work, batch, noise, models, outputs


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_elbo_terms_and_generation_agree_between_tensorflow_and_jax(both_sides, representation):
    _, batch, noise, models, outputs = both_sides
    model, jax_out = models[representation], outputs[representation]
    terms = model.elbo_terms(batch, SIGMA, 0, noise=noise)
    for name in ("loss", "kl", "nll", "kl_per_layer"):
        np.testing.assert_allclose(jax_out[f"terms_{name}"], terms[name].numpy(), rtol=2e-5,
                                   atol=1e-3, err_msg=name)
    np.testing.assert_allclose(jax_out["terms_mean"], terms["mean"].numpy(), atol=2e-6)
    generated = model.generate(batch["context_frames"], batch["context_cameras"],
                               batch["query_camera"], noise=noise)
    np.testing.assert_allclose(jax_out["generated"], generated.numpy(), atol=2e-6)


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_gradients_agree_between_tensorflow_and_jax(both_sides, representation):
    _, batch, noise, models, outputs = both_sides
    model, jax_out = models[representation], outputs[representation]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.elbo_terms(batch, SIGMA, 0, noise=noise)["loss"])
    gradients = tape.gradient(loss, model.trainable_variables)
    assert len(gradients) == len([k for k in jax_out if k.startswith("gradient/")])
    for variable, gradient in zip(model.trainable_variables, gradients):
        expected = gradient.numpy()
        np.testing.assert_allclose(
            jax_out[f"gradient/{variable.path.split('/', 1)[-1]}"], expected, rtol=1e-3,
            atol=1e-4 * float(np.abs(expected).max()) + 1e-7, err_msg=variable.path)


def test_the_jax_step_lowers_the_loss_and_its_weights_load_back_here(both_sides):
    work, batch, noise, _, outputs = both_sides
    losses = outputs["tower"]["train_losses"]
    assert len(losses) == TRAIN_STEPS and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1.0, losses
    trained = GQN(get_preset("tiny", representation="tower", image_size=IMAGE_SIZE))
    trained.load_weights(work / "trained.weights.h5")
    np.testing.assert_allclose(trained.elbo_terms(batch, SIGMA, 0, noise=noise)["loss"].numpy(),
                               outputs["tower"]["trained_loss"], rtol=2e-5)


def test_noise_fed_in_is_the_noise_used(make_batch):
    keras.utils.set_random_seed(0)
    model = GQN(get_preset("tiny", image_size=IMAGE_SIZE))
    batch = make_batch(batch_size=2, context_size=1, image_size=IMAGE_SIZE, seed=3)
    c = model.gqn_config
    shape = (2, c.core_size, c.core_size, c.z_channels)
    seeded = np.stack([n.numpy() for n in distributions.latent_noise(
        tf.constant([4, 0], tf.int32), c.num_layers, shape)])
    by_seed = model.elbo_terms(batch, SIGMA, 4)["loss"].numpy()
    np.testing.assert_array_equal(
        model.elbo_terms(batch, SIGMA, 4, noise=seeded)["loss"].numpy(), by_seed)
    other = model.elbo_terms(batch, SIGMA, 4, noise=_noise(model, 2))["loss"].numpy()
    assert not np.allclose(other, by_seed)
    np.testing.assert_array_equal(
        model.generate(batch["context_frames"], batch["context_cameras"], batch["query_camera"],
                       seed=4, noise=seeded).numpy(),
        model.generate(batch["context_frames"], batch["context_cameras"],
                       batch["query_camera"], seed=4).numpy())


def test_jax_noise_of_a_replicas_rows_is_those_rows_of_the_global_batch(both_sides):
    jax_out = both_sides[4]["tower"]
    whole, rows = jax_out["noise_whole"], jax_out["noise_rows"]
    assert whole.shape == (2, 6, 4, 4, 2) and rows.shape == (2, 2, 4, 4, 2)
    np.testing.assert_array_equal(rows, whole[:, 2:4])
    assert abs(float(whole.mean())) < 0.2 and 0.8 < float(whole.std()) < 1.2
