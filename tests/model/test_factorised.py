"""The factorised step-invariant gates (gqn_tf/model/conv_lstm.py) against the plain convolution
of the concatenated inputs that they replace: the constant-input convolution on its own, then
whole GQNs (ELBO terms, gradients, generation) with `factorise_conditioning` on and off."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from gqn_tf.data import pipeline
from gqn_tf.model import GQN, get_preset
from gqn_tf.model import conv_lstm
from gqn_tf.training import checkpoints

PRETRAINED = conv_lstm.__file__.rsplit("/gqn_tf/", 1)[0] + "/pretrained/gqn_sm7_32.npz"


@pytest.mark.parametrize("size", [16, 21, 32])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
def test_constant_input_convolution_equals_the_broadcast_one(size, kernel_size):
    rng = np.random.default_rng(size * 10 + kernel_size)
    values = rng.normal(size=(3, 11)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size, kernel_size, 11, 6)).astype(np.float32)
    broadcast = np.broadcast_to(values[:, None, None, :], (3, size, size, 11))
    expected = ops.conv(broadcast, kernel, padding="same")
    got = conv_lstm.convolve_constant(ops.convert_to_tensor(values), kernel, size, size)
    assert got.shape == (3, size, size, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # The border differs from the interior (padding is respected, not ignored).
    if kernel_size > 1:
        assert not np.allclose(got[:, 0, 0], got[:, size // 2, size // 2])


def test_padding_mask_matches_tensorflows_same_padding():
    # An even kernel pads one more after than before; the mask reads the same taps as TF.
    for size, kernel_size in [(5, 4), (6, 2), (4, 5)]:
        image = np.zeros((1, size, size, 1), np.float32)
        image[0, :, :, 0] = 1.0
        kernel = np.ones((kernel_size, kernel_size, 1, 1), np.float32)
        counts = tf.nn.conv2d(image, kernel, 1, "SAME").numpy()[0, :, :, 0]
        mask = conv_lstm.same_padding_mask(size, kernel_size)
        np.testing.assert_array_equal(counts, np.outer(mask.sum(1), mask.sum(1)))


def _model(representation, shared, image_size=32, kernel_size=3, seed=0):
    tf.keras.utils.set_random_seed(seed)
    config = get_preset("tiny", representation=representation, shared_cores=shared,
                        image_size=image_size, kernel_size=kernel_size, num_layers=3)
    return GQN(config)


def _random_bias(model, seed):
    """Biases start at zero; random ones make the test see a bias added twice or never."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        if "bias" in variable.path:
            variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(np.float32))


def _both_ways(model, batch, sigma=0.7, seed=(5, 6)):
    """{True: (terms, gradients, generated), False: ...} of `model` on `batch`."""
    results = {}
    for factorised in (True, False):
        model.factorise_conditioning = factorised
        with tf.GradientTape() as tape:
            terms = model.elbo_terms(batch, tf.constant(sigma), seed)
            loss = tf.reduce_mean(terms["loss"])
        gradients = tape.gradient(loss, model.trainable_variables)
        generated = model.generate(batch["context_frames"], batch["context_cameras"],
                                   batch["query_camera"], seed=3)
        results[factorised] = terms, gradients, generated
    return results


def _assert_same(results, model, gradient_atol=2e-5):
    (terms, gradients, generated), (plain_terms, plain_gradients, plain_generated) = (
        results[True], results[False])
    for name in ("loss", "kl_per_layer", "nll", "mean"):
        np.testing.assert_allclose(terms[name], plain_terms[name], rtol=2e-5, atol=2e-5,
                                   err_msg=name)
    np.testing.assert_allclose(generated, plain_generated, rtol=1e-5, atol=2e-6)
    for variable, got, expected in zip(model.trainable_variables, gradients, plain_gradients):
        # With M = 0 the representation network has no gradient on either path.
        assert (got is None) == (expected is None), variable.path
        if got is None:
            assert "representation" in variable.path
            continue
        scale = float(np.abs(expected).max()) + 1e-6
        np.testing.assert_allclose(got / scale, expected / scale, atol=gradient_atol,
                                   err_msg=variable.path)


@pytest.mark.parametrize("representation", ["tower", "pool", "pyramid"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("context_size", [0, 2])
def test_gqn_factorised_equals_plain(representation, shared, context_size, make_batch):
    model = _model(representation, shared)
    _random_bias(model, 1)
    batch = make_batch(batch_size=2, context_size=context_size, image_size=32, seed=4)
    _assert_same(_both_ways(model, batch), model)


@pytest.mark.parametrize("representation", ["tower", "pool", "pyramid"])
@pytest.mark.parametrize("image_size,kernel_size", [(64, 5), (84, 5), (128, 3)])
def test_gqn_factorised_equals_plain_at_dataset_sizes(representation, image_size, kernel_size,
                                                       make_batch):
    # Core grids 16x16, 21x21 and 32x32: the frame sizes of the seven datasets.
    model = _model(representation, False, image_size, kernel_size)
    _random_bias(model, 2)
    batch = make_batch(batch_size=1, context_size=1, image_size=image_size, seed=7)
    _assert_same(_both_ways(model, batch), model)


def test_bundled_model_from_before_the_factorisation_gives_the_same_elbo(sample_dir):
    # The bundled model keeps the variables of the plain gates: both paths, same ELBO.
    model, header = checkpoints.load_compact(PRETRAINED)
    # Unshuffled: tf.data's shuffle also reads TensorFlow's global seed, which the tests before
    # this one set, so a shuffled batch would depend on which tests ran first.
    dataset = pipeline.make_dataset(
        "shepard_metzler_7_parts", sample_dir, "test", batch_size=4, context_size=3, seed=0,
        frame_size=model.gqn_config.image_size, repeat=False, shuffle=False)
    batch = next(iter(dataset))
    results = _both_ways(model, batch, sigma=0.3)
    # The two paths sum in different orders. On trained weights that float32 rounding reached
    # 2.2e-5 of a variable's largest gradient on some batches (the random models above stay
    # under 2e-5); a bias added twice or a term left out differs by far more than 1e-4.
    _assert_same(results, model, gradient_atol=1e-4)
    # It renders the same images for the same seed, and other images for another seed.
    frames = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    model.factorise_conditioning = True
    again = model.generate(*frames, seed=3)
    np.testing.assert_array_equal(again, results[True][2])
    assert np.abs(model.generate(*frames, seed=4) - again).max() > 1e-3
    assert header["metadata"]["step"] > 0
