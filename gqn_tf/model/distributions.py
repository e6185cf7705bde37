"""Latent and observation distributions: the heads η_π, η_e and the Gaussian parts of the ELBO.

The only backend-specific code of the model lives here. On the TensorFlow backend the
distributions are TensorFlow Probability's `Normal` and the latent noise comes from
`tf.random.stateless_normal`, as always. On JAX (where TFP does not import) the same formulas
are written in `keras.ops` (gaussian.py, checked equal to TFP) and the noise comes from
`jax.random`. On both, the noise is a pure function of the seed and of each scene's index in the
global batch; the two backends' streams differ, so to compare them feed the same noise
(`noise=` of `GQN.elbo_terms` and `GQN.generate`).
"""

import collections
import math

import keras
from keras import ops

from gqn_tf.model import gaussian

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
if ON_TENSORFLOW:
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd = tfp.distributions

_Normal = collections.namedtuple("Normal", ["loc", "scale"])

_MIN_SCALE = 1e-4


@keras.saving.register_keras_serializable(package="gqn_tf")
class LatentHead(keras.layers.Layer):
    """η_π or η_e: a 5x5 conv of a core's hidden state → loc and a positive scale of z_l."""

    def __init__(self, z_channels=3, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.z_channels, self.kernel_size = z_channels, kernel_size
        self.conv = keras.layers.Conv2D(2 * z_channels, kernel_size, padding="same", name="conv")

    def build(self, hidden_shape):
        self.conv.build(hidden_shape)

    def call(self, hidden):
        loc, raw_scale = ops.split(ops.cast(self.conv(hidden), "float32"), 2, axis=-1)
        return loc, ops.softplus(raw_scale) + _MIN_SCALE

    def get_config(self):
        return {**super().get_config(), "z_channels": self.z_channels,
                "kernel_size": self.kernel_size}


def normal(loc, scale):
    """The diagonal Gaussian of one latent layer: a TFP distribution on TensorFlow, a
    (loc, scale) pair on other backends."""
    if ON_TENSORFLOW:
        return tfd.Normal(loc=loc, scale=scale)
    return _Normal(loc, scale)


def latent_noise(seed, num_layers, shape, batch_offset=0, global_batch_size=None):
    """Standard normal noise for the L latent layers, a pure function of `seed` (int32 [2]).

    The noise is drawn for the whole global batch and this replica's slice
    [batch_offset, batch_offset + B) is returned, so a scene gets the same latents whether the
    batch runs on one device or is split over replicas. shape: [B, h, w, z] (B may be dynamic
    on TensorFlow). Returns a list of L tensors of that shape.
    """
    batch = shape[0]
    total = batch if global_batch_size is None else global_batch_size
    full_shape = (num_layers, total, *shape[1:])
    if ON_TENSORFLOW:
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
        noise = tf.random.stateless_normal(full_shape, seed=seed)
        noise = noise[:, batch_offset:batch_offset + batch]
        return tf.unstack(noise, num=num_layers, axis=0)
    import jax

    key = jax.random.wrap_key_data(ops.cast(seed, "uint32"), impl="threefry2x32")
    noise = jax.random.normal(key, full_shape, "float32")
    if global_batch_size is not None:
        noise = jax.lax.dynamic_slice_in_dim(noise, batch_offset, batch, axis=1)
    return [noise[layer] for layer in range(num_layers)]


def split_noise(noise, num_layers):
    """Noise given as one [L, B, h, w, z] array → the list of L [B, h, w, z] tensors."""
    noise = ops.convert_to_tensor(noise, "float32")
    return [noise[layer] for layer in range(num_layers)]


def sample(distribution, noise):
    """A reparameterised sample loc + scale * ε, differentiable in loc and scale."""
    return distribution.loc + distribution.scale * noise


def kl_divergence(posterior, prior):
    """KL[q_l || π_l] summed over the latent's pixels and channels: [B]."""
    if ON_TENSORFLOW:
        return tf.reduce_sum(tfd.kl_divergence(posterior, prior), axis=[1, 2, 3])
    return ops.sum(gaussian.kl_divergence(posterior.loc, posterior.scale, prior.loc,
                                          prior.scale), axis=[1, 2, 3])


def gaussian_nll(target, mean, sigma):
    """−log N(x^q | mean, σ²) summed over pixels and channels, in nats: [B]."""
    target, mean = ops.cast(target, "float32"), ops.cast(mean, "float32")
    sigma = ops.cast(sigma, "float32")
    if ON_TENSORFLOW:
        likelihood = tfd.Normal(loc=mean, scale=sigma)
        return -tf.reduce_sum(likelihood.log_prob(target), axis=[1, 2, 3])
    return -ops.sum(gaussian.log_prob(target, mean, sigma), axis=[1, 2, 3])


def bits_per_dim(nats, num_dims):
    """Converts nats per image to bits per dimension."""
    return nats / (num_dims * math.log(2.0))
