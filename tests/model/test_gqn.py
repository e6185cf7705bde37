import keras
import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import schedules
from gqn_tf.training.step import TrainStep


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return GQN(get_preset("tiny"))


@pytest.mark.parametrize("representation", ["tower", "pool", "pyramid"])
@pytest.mark.parametrize("views", [0, 1, 5])
def test_output_shapes_and_finite_elbo(make_batch, representation, views):
    model = GQN(get_preset("tiny", representation=representation))
    batch = make_batch(batch_size=2, context_size=views)
    terms = model.elbo_terms(batch, sigma=2.0, seed=0)
    for name in ("loss", "elbo", "kl", "nll"):
        assert terms[name].shape == (2,)
        assert np.all(np.isfinite(terms[name]))
    assert terms["kl_per_layer"].shape == (2, model.gqn_config.num_layers)
    assert np.all(terms["kl_per_layer"].numpy() >= 0.0)
    np.testing.assert_allclose(terms["loss"], terms["kl"] + terms["nll"], rtol=1e-6)
    image = model.generate(batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    assert image.shape == (2, 64, 64, 3)
    assert float(tf.reduce_min(image)) >= 0.0 and float(tf.reduce_max(image)) <= 1.0
    recon = model.reconstruct(batch["context_frames"], batch["context_cameras"],
                              batch["query_camera"], batch["target"])
    assert recon.shape == (2, 64, 64, 3)


def test_every_trainable_weight_gets_a_gradient(make_batch, tiny_model):
    batch = make_batch(batch_size=2, context_size=2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tiny_model.elbo_terms(batch, sigma=0.7, seed=1)["loss"])
    gradients = tape.gradient(loss, tiny_model.trainable_variables)
    dead = [v.path for v, g in zip(tiny_model.trainable_variables, gradients)
            if g is None or float(tf.reduce_max(tf.abs(g))) == 0.0]
    # The first inference core reads the canvas u_0 = 0 (Fig. S2), so its downsampling kernel
    # can never receive a gradient: that one weight is inert by construction.
    inert = f"{tiny_model.name}/inference_core_0/canvas_downsample/kernel"
    assert dead == [inert]


def test_same_seed_same_samples_other_seed_other_samples(make_batch, tiny_model):
    batch = make_batch(batch_size=2, context_size=1)
    args = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    first, again = tiny_model.generate(*args, seed=7), tiny_model.generate(*args, seed=7)
    other = tiny_model.generate(*args, seed=8)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-5
    terms = [tiny_model.elbo_terms(batch, 1.0, seed)["kl"] for seed in (3, 3, 4)]
    np.testing.assert_array_equal(terms[0], terms[1])
    assert not np.allclose(terms[0], terms[2])


def test_shared_cores_have_one_core_for_all_steps():
    unshared = GQN(get_preset("tiny", num_layers=3))
    shared = GQN(get_preset("tiny", num_layers=3, shared_cores=True))
    assert len(unshared.generator_cores) == 3 and len(shared.generator_cores) == 1
    assert shared.count_params() < unshared.count_params()


def test_keras_save_and_load_give_identical_outputs(make_batch, tmp_path):
    model = GQN(get_preset("tiny", representation="pool", shared_cores=True))
    batch = make_batch(batch_size=2, context_size=3)
    path = tmp_path / "gqn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.gqn_config == model.gqn_config
    args = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    np.testing.assert_array_equal(model.generate(*args, seed=5), loaded.generate(*args, seed=5))
    np.testing.assert_array_equal(model.elbo_terms(batch, 0.7, 5)["loss"],
                                  loaded.elbo_terms(batch, 0.7, 5)["loss"])


def test_calling_the_model_generates_with_the_given_seed(make_batch, tiny_model):
    batch = make_batch(batch_size=1, context_size=2)
    image = tiny_model({**batch, "seed": np.array([1, 2], np.int32)})
    np.testing.assert_array_equal(
        image, tiny_model.generate(batch["context_frames"], batch["context_cameras"],
                                   batch["query_camera"], seed=[1, 2]))


def test_training_on_one_batch_drives_the_loss_down(make_batch):
    """A real learning test: 300 Adam steps on one fixed batch of smooth images."""
    keras.utils.set_random_seed(2)
    model = GQN(get_preset("tiny"))
    batch = make_batch(batch_size=4, context_size=2, seed=3)
    ramp = np.linspace(0.1, 0.9, 64, dtype=np.float32)
    batch["target"] = np.stack([np.broadcast_to(ramp[:, None, None] * c, (64, 64, 3))
                                for c in (0.5, 0.7, 0.9, 1.0)]).astype(np.float32)
    table = schedules.ScheduleConfig(lr_initial=3e-3, lr_final=3e-3,
                                     sigma_initial=0.1, sigma_final=0.1)
    step = TrainStep(model, schedules.make_optimizer(table), 4, schedule=table, seed=0)
    losses = [float(step(batch)["loss"]) for _ in range(300)]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.25 * first, (first, last)


def test_a_context_mask_leaves_out_views_as_if_they_were_not_given(make_batch):
    """Batches of M_max views with a mask stand for any M <= M_max (one input shape): r, the
    ELBO and the render equal those of the batch with only the unmasked views."""
    model = GQN(get_preset("tiny", image_size=16))
    batch = make_batch(batch_size=2, context_size=4, image_size=16)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    masked = model.represent(batch["context_frames"], batch["context_cameras"], mask).numpy()
    for row, m in enumerate((2, 3)):
        alone = model.represent(batch["context_frames"][row:row + 1, :m],
                                batch["context_cameras"][row:row + 1, :m]).numpy()
        np.testing.assert_allclose(masked[row], alone[0], atol=1e-6)
    sliced = {**batch, "context_frames": batch["context_frames"][:, :2],
              "context_cameras": batch["context_cameras"][:, :2]}
    two = np.array([[1, 1, 0, 0]] * 2, np.float32)
    np.testing.assert_allclose(
        model.elbo_terms({**batch, "context_mask": two}, 0.7, [3, 1])["loss"],
        model.elbo_terms(sliced, 0.7, [3, 1])["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        model.generate(batch["context_frames"], batch["context_cameras"], batch["query_camera"],
                       [3, 1], context_mask=two),
        model.generate(sliced["context_frames"], sliced["context_cameras"],
                       batch["query_camera"], [3, 1]), atol=1e-6)
    none = model.represent(batch["context_frames"], batch["context_cameras"],
                           np.zeros((2, 4), np.float32)).numpy()
    assert np.all(none == 0)  # no view: r = 0, as with M = 0
