import math

import numpy as np
import tensorflow as tf

from gqn_tf.model import distributions


def test_heads_give_positive_scales():
    head = distributions.LatentHead(z_channels=3, kernel_size=3)
    hidden = np.random.default_rng(0).normal(scale=50.0, size=(2, 4, 4, 8)).astype(np.float32)
    loc, scale = head(hidden)
    assert loc.shape == scale.shape == (2, 4, 4, 3)
    assert float(tf.reduce_min(scale)) > 0.0


def test_kl_is_non_negative_and_zero_for_equal_distributions():
    rng = np.random.default_rng(1)
    loc, scale = rng.normal(size=(2, 4, 4, 3)), rng.uniform(0.1, 2.0, size=(2, 4, 4, 3))
    q = distributions.normal(loc.astype(np.float32), scale.astype(np.float32))
    p = distributions.normal(np.zeros((2, 4, 4, 3), np.float32), np.ones((2, 4, 4, 3), np.float32))
    assert np.all(distributions.kl_divergence(q, p).numpy() > 0.0)
    np.testing.assert_allclose(distributions.kl_divergence(q, q), 0.0, atol=1e-5)


def test_nll_floor_matches_the_design_note():
    image = np.full((1, 64, 64, 3), 0.5, np.float32)
    floor = distributions.gaussian_nll(image, image, 2.0).numpy()[0]
    assert abs(floor - 12288 * 0.5 * math.log(2 * math.pi * 4.0)) < 1.0
    assert round(float(floor)) == 19809
    assert abs(distributions.bits_per_dim(floor, 12288) - 2.33) < 0.01


def test_replica_slices_of_the_noise_equal_the_global_noise():
    whole = distributions.latent_noise([3, 4], 2, (6, 4, 4, 2))
    half = distributions.latent_noise([3, 4], 2, (3, 4, 4, 2), batch_offset=3, global_batch_size=6)
    for layer in range(2):
        np.testing.assert_array_equal(whole[layer][3:], half[layer])
    other = distributions.latent_noise([3, 5], 2, (6, 4, 4, 2))
    assert not np.allclose(whole[0], other[0])
