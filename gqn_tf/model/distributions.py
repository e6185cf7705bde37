"""Latent and observation distributions: the heads η_π, η_e and the TFP parts of the ELBO.

TensorFlow Probability and TensorFlow's stateless random ops live here only; the rest of the
model is written in `keras.ops`.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

tfd = tfp.distributions

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
    """The diagonal Gaussian of one latent layer, as a TFP distribution."""
    return tfd.Normal(loc=loc, scale=scale)


def latent_noise(seed, num_layers, shape, batch_offset=0, global_batch_size=None):
    """Standard normal noise for the L latent layers, a pure function of `seed`.

    The noise is drawn for the whole global batch and this replica's slice
    [batch_offset, batch_offset + B) is returned, so a scene gets the same latents whether the
    batch runs on one device or is split over replicas. shape: [B, h, w, z] (B may be dynamic).
    Returns a list of L tensors of that shape.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    batch = shape[0]
    total = batch if global_batch_size is None else global_batch_size
    noise = tf.random.stateless_normal((num_layers, total, *shape[1:]), seed=seed)
    noise = noise[:, batch_offset:batch_offset + batch]
    return tf.unstack(noise, num=num_layers, axis=0)


def sample(distribution, noise):
    """A reparameterised sample loc + scale * ε, differentiable in loc and scale."""
    return distribution.loc + distribution.scale * noise


def kl_divergence(posterior, prior):
    """KL[q_l || π_l] summed over the latent's pixels and channels: [B]."""
    return tf.reduce_sum(tfd.kl_divergence(posterior, prior), axis=[1, 2, 3])


def gaussian_nll(target, mean, sigma):
    """−log N(x^q | mean, σ²) summed over pixels and channels, in nats: [B]."""
    likelihood = tfd.Normal(loc=tf.cast(mean, tf.float32), scale=tf.cast(sigma, tf.float32))
    return -tf.reduce_sum(likelihood.log_prob(tf.cast(target, tf.float32)), axis=[1, 2, 3])


def bits_per_dim(nats, num_dims):
    """Converts nats per image to bits per dimension."""
    return nats / (num_dims * math.log(2.0))
