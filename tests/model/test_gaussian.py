import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from gqn_tf.model import gaussian

tfd = tfp.distributions


def _values(seed, shape=(2, 4, 4, 3)):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape).astype("float32"),
            np.exp(rng.normal(size=shape)).astype("float32") * 0.5 + 0.05)


def test_log_prob_equals_tfp_normal():
    x, _ = _values(0)
    loc, scale = _values(1)
    expected = tfd.Normal(loc=loc, scale=scale).log_prob(x).numpy()
    np.testing.assert_allclose(np.asarray(gaussian.log_prob(x, loc, scale)), expected,
                               rtol=1e-5, atol=1e-5)


def test_kl_equals_tfp_and_is_zero_only_for_equal_gaussians():
    loc_q, scale_q = _values(2)
    loc_p, scale_p = _values(3)
    expected = tfd.kl_divergence(tfd.Normal(loc_q, scale_q), tfd.Normal(loc_p, scale_p)).numpy()
    kl = np.asarray(gaussian.kl_divergence(loc_q, scale_q, loc_p, scale_p))
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-5)
    assert (kl > 0).all()
    same = np.asarray(gaussian.kl_divergence(loc_q, scale_q, loc_q, scale_q))
    np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_gradients_equal_tfp():
    loc_q, scale_q = (tf.Variable(v) for v in _values(4))
    loc_p, scale_p = _values(5)
    with tf.GradientTape(persistent=True) as tape:
        ours = tf.reduce_sum(gaussian.kl_divergence(loc_q, scale_q, loc_p, scale_p))
        theirs = tf.reduce_sum(tfd.kl_divergence(tfd.Normal(loc_q, scale_q),
                                                 tfd.Normal(loc_p, scale_p)))
    for a, b in zip(tape.gradient(ours, [loc_q, scale_q]), tape.gradient(theirs, [loc_q, scale_q])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
