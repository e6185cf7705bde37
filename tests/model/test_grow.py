"""Starting a GQN with wider cores or more steps from a trained one (gqn_tf/model/grow.py): the
grown model renders exactly as the trained one (and, wider, scores the same), what is new is
live (the weights that read it get gradients), and every other config change is refused by
name."""

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import pipeline
from gqn_tf.model import GQN, get_preset, grow
from gqn_tf.training import checkpoints

PRETRAINED = grow.__file__.rsplit("/gqn_tf/", 1)[0] + "/pretrained/gqn_sm7_32.npz"


def _random_weights(model, seed):
    """Nonzero values in every weight (biases included), so no copy error hides behind zeros."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(scale=0.1, size=variable.shape).astype(np.float32))


def _outputs(model, batch):
    frames = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    terms = model.elbo_terms(batch, sigma=0.5, seed=3)
    return [model.generate(*frames, seed=9), terms["loss"], terms["kl_per_layer"],
            terms["mean"]]


@pytest.mark.parametrize("representation", ["tower", "pool"])
@pytest.mark.parametrize("shared", [False, True])
def test_wider_cores_start_as_the_trained_model(representation, shared, make_batch):
    tiny = dict(image_size=32, representation=representation, shared_cores=shared)
    source = GQN(get_preset("tiny", **tiny))
    _random_weights(source, 1)
    wide = GQN(get_preset("tiny", hidden_channels=13, **tiny))
    assert grow.start_from(wide, source) == {"hidden_channels": (8, 13)}
    batch = make_batch(batch_size=2, context_size=2, image_size=32, seed=4)
    for got, expected in zip(_outputs(wide, batch), _outputs(source, batch)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_the_bundled_model_grown_wider_renders_the_same_and_its_new_units_learn(sample_dir):
    source, _ = checkpoints.load_compact(PRETRAINED)
    config = source.gqn_config
    wide = GQN(config.replace(hidden_channels=2 * config.hidden_channels))
    fresh = {v.path: v.numpy() for v in wide.weights}
    grow.start_from(wide, source, PRETRAINED)
    batch = next(iter(pipeline.make_dataset(
        "shepard_metzler_7_parts", sample_dir, "test", batch_size=4, context_size=3, seed=0,
        frame_size=config.image_size, repeat=False)))
    for got, expected in zip(_outputs(wide, batch), _outputs(source, batch)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    hidden = config.hidden_channels
    weights = {v.path.split("/", 1)[-1]: v for v in wide.weights}
    prior = weights["prior_head/conv/kernel"]
    gates = weights["generator_core_0/cell/gates/kernel"]
    # The new units' own input weights are the fresh ones; what reads them starts at zero.
    assert not gates.numpy()[:, :, hidden:2 * hidden, :].any()  # rows of the new h^g
    np.testing.assert_array_equal(gates.numpy()[:, :, 2 * hidden:, hidden:2 * hidden],
                                  fresh[gates.path][:, :, 2 * hidden:, hidden:2 * hidden])
    assert not prior.numpy()[:, :, hidden:, :].any()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(wide.elbo_terms(batch, sigma=0.5, seed=3)["loss"])
    readers = [prior, weights["generator_core_0/canvas_update/kernel"]]
    grads = tape.gradient(loss, readers)
    assert np.abs(grads[0].numpy()[:, :, hidden:, :]).max() > 0
    assert np.abs(grads[1].numpy()[..., hidden:]).max() > 0


def test_more_steps_render_as_the_trained_steps_and_then_draw(make_batch):
    source = GQN(get_preset("tiny", image_size=32))
    _random_weights(source, 2)
    config = source.gqn_config
    longer = GQN(config.replace(num_layers=config.num_layers + 2, hidden_channels=12))
    assert grow.start_from(longer, source) == {"hidden_channels": (8, 12), "num_layers": (2, 4)}
    batch = make_batch(batch_size=2, context_size=2, image_size=32, seed=5)
    frames = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    # The same noise for the trained steps; the appended steps' latents change nothing yet.
    noise = np.random.default_rng(0).normal(size=(4, 2, 8, 8, config.z_channels))
    expected = source.generate(*frames, noise=noise[:2])
    np.testing.assert_allclose(longer.generate(*frames, noise=noise), expected, atol=1e-6)
    terms = longer.elbo_terms(batch, sigma=0.5, seed=0, noise=noise)
    trained = source.elbo_terms(batch, sigma=0.5, seed=0, noise=noise[:2])
    np.testing.assert_allclose(terms["mean"], trained["mean"], atol=1e-6)
    np.testing.assert_allclose(terms["kl_per_layer"][:, :2], trained["kl_per_layer"], atol=1e-5)
    assert (np.asarray(terms["kl_per_layer"][:, 2:]) > 0).all()  # the new latents cost KL
    update = {v.path.split("/", 1)[-1]: v for v in longer.weights}[
        "generator_core_3/canvas_update/kernel"]
    assert not update.numpy().any()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(longer.elbo_terms(batch, sigma=0.5, seed=0, noise=noise)["loss"])
    assert np.abs(tape.gradient(loss, update).numpy()).max() > 0


@pytest.mark.parametrize("change,named", [
    (dict(hidden_channels=4), "hidden_channels"),  # narrower
    (dict(num_layers=1), "num_layers"),  # fewer steps
    (dict(z_channels=3), "z_channels"),
    (dict(hidden_channels=16, canvas_channels=16), "canvas_channels"),
])
def test_other_config_changes_are_refused_by_name(change, named):
    source = get_preset("tiny")
    with pytest.raises(ValueError, match=f"--init_from run/a holds another model config.*"
                                         f"{named}.*only hidden_channels and num_layers "
                                         f"may grow"):
        grow.check_startable(source, source.replace(**change), "run/a")


def test_shared_cores_keep_their_number_of_steps():
    shared = get_preset("tiny", shared_cores=True)
    with pytest.raises(ValueError, match="shared cores.*num_layers 2 -> 3.*num_layers=2"):
        grow.check_startable(shared, shared.replace(num_layers=3), "run/a")
    assert grow.check_startable(shared, shared.replace(hidden_channels=9), "run/a") == {
        "hidden_channels": (8, 9)}
