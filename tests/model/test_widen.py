"""Starting a GQN with wider cores from a trained one (gqn_tf/model/widen.py): the wider model
renders and scores exactly as the trained one, its new units are live (the weights that read
them get gradients), and every other config change is refused by name."""

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import pipeline
from gqn_tf.model import GQN, get_preset, widen
from gqn_tf.training import checkpoints

PRETRAINED = widen.__file__.rsplit("/gqn_tf/", 1)[0] + "/pretrained/gqn_sm7_32.npz"


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
    assert widen.start_from(wide, source) == {"hidden_channels": (8, 13)}
    batch = make_batch(batch_size=2, context_size=2, image_size=32, seed=4)
    for got, expected in zip(_outputs(wide, batch), _outputs(source, batch)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_the_bundled_model_widened_renders_the_same_and_its_new_units_learn(sample_dir):
    source, _ = checkpoints.load_compact(PRETRAINED)
    config = source.gqn_config
    wide = GQN(config.replace(hidden_channels=2 * config.hidden_channels))
    fresh = {v.path: v.numpy() for v in wide.weights}
    widen.start_from(wide, source, PRETRAINED)
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


@pytest.mark.parametrize("change,named", [
    (dict(hidden_channels=4), "hidden_channels"),  # narrower
    (dict(z_channels=3), "z_channels"),
    (dict(hidden_channels=16, canvas_channels=16), "canvas_channels"),
])
def test_other_config_changes_are_refused_by_name(change, named):
    source = get_preset("tiny")
    with pytest.raises(ValueError, match=f"--init_from run/a holds another model config.*"
                                         f"{named}.*only hidden_channels may grow"):
        widen.check_startable(source, source.replace(**change), "run/a")
