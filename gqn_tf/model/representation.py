"""Representation networks f (Fig. S1): tower, pool and pyramid.

Each maps one observation (frame [N, H, W, 3], viewpoint [N, 7]) to a representation;
`SceneRepresentation` applies one to every context view and sums, so any number of views
works, zero included (r = 0).
"""

import keras
from keras import ops


def _broadcast_viewpoint(viewpoint, like):
    """Tiles viewpoints [N, 7] over the spatial grid of `like` [N, h, w, *] → [N, h, w, 7]."""
    shape = ops.shape(like)
    viewpoint = ops.cast(viewpoint, like.dtype)[:, None, None, :]
    return ops.broadcast_to(viewpoint, (shape[0], shape[1], shape[2], ops.shape(viewpoint)[-1]))


def _conv(filters, kernel_size, strides=1, padding="same", name=None):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, activation="relu", name=name
    )


@keras.saving.register_keras_serializable(package="gqn_tf")
class Tower(keras.layers.Layer):
    """The tower network: [N, H, W, 3] and [N, 7] → [N, H/4, W/4, channels], with skips."""

    def __init__(self, channels=256, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        half = max(channels // 2, 1)
        self.conv1 = _conv(channels, 2, 2, "valid", "conv1")
        self.conv2 = _conv(channels, 2, 2, "valid", "conv2")
        self.conv3 = _conv(half, 3, name="conv3")
        self.conv4 = _conv(channels, 2, 2, "valid", "conv4")
        self.conv5 = _conv(channels, 3, name="conv5")
        self.conv6 = _conv(half, 3, name="conv6")
        self.conv7 = _conv(channels, 3, name="conv7")
        self.conv8 = _conv(channels, 1, name="conv8")

    def build(self, frames_shape, viewpoints_shape):
        n, height, width, _ = frames_shape
        half, quarter = (n, height // 2, width // 2), (n, height // 4, width // 4)
        self.conv1.build(frames_shape)
        self.conv2.build((*half, self.channels))
        self.conv3.build((*half, self.channels))
        self.conv4.build((*half, max(self.channels // 2, 1)))
        with_view = (*quarter, self.channels + viewpoints_shape[-1])
        self.conv5.build(with_view)
        self.conv6.build(with_view)
        self.conv7.build((*quarter, max(self.channels // 2, 1)))
        self.conv8.build((*quarter, self.channels))

    def call(self, frames, viewpoints):
        skip_in = self.conv1(frames)  # [N, H/2, W/2, C]
        skip_out = self.conv2(skip_in)  # [N, H/4, W/4, C]
        r = self.conv4(self.conv3(skip_in)) + skip_out
        skip_in = ops.concatenate([r, _broadcast_viewpoint(viewpoints, r)], axis=-1)
        skip_out = self.conv5(skip_in)
        r = self.conv7(self.conv6(skip_in)) + skip_out
        return self.conv8(r)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="gqn_tf")
class Pool(Tower):
    """The tower followed by global average pooling: → [N, 1, 1, channels]."""

    def call(self, frames, viewpoints):
        return ops.mean(super().call(frames, viewpoints), axis=(1, 2), keepdims=True)


@keras.saving.register_keras_serializable(package="gqn_tf")
class Pyramid(keras.layers.Layer):
    """The pyramid network: image and broadcast viewpoint, four strided convs → [N, 1, 1, C]."""

    def __init__(self, channels=256, image_size=64, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.image_size = channels, image_size
        widths = [max(channels // 8, 1), max(channels // 4, 1), max(channels // 2, 1)]
        self.convs = [_conv(w, 2, 2, "valid", f"conv{i + 1}") for i, w in enumerate(widths)]
        # 8x8/8 at 64x64: the last conv always ends at 1x1. At 84x84 the third conv leaves
        # 10x10 of the 10.5x10.5 grid (its last row and column of 2x2 cells are dropped).
        last = image_size // 8
        self.convs.append(_conv(channels, last, last, "valid", "conv4"))

    def build(self, frames_shape, viewpoints_shape):
        n, size = frames_shape[0], self.image_size
        channels = frames_shape[-1] + viewpoints_shape[-1]
        for conv in self.convs:
            conv.build((n, size, size, channels))
            size, channels = size // 2, conv.filters

    def call(self, frames, viewpoints):
        x = ops.concatenate([frames, _broadcast_viewpoint(viewpoints, frames)], axis=-1)
        for conv in self.convs:
            x = conv(x)
        return x

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "image_size": self.image_size}


def make_representation_network(config):
    """The per-view network f named by `config.representation`."""
    if config.representation == "pyramid":
        return Pyramid(config.r_channels, config.image_size, name="pyramid")
    layer = Pool if config.representation == "pool" else Tower
    return layer(config.r_channels, name=config.representation)


@keras.saving.register_keras_serializable(package="gqn_tf")
class SceneRepresentation(keras.layers.Layer):
    """r = Σ_k f(x^k, v^k) over the context views; with no views r = 0. An optional mask
    [B, M] of 0/1 weights the views (r = Σ_k m_k f(x^k, v^k)), so that batches with different
    numbers of real views share one shape (one compiled program on JAX/XLA)."""

    def __init__(self, network, image_size, **kwargs):
        super().__init__(**kwargs)
        self.network, self.image_size = network, image_size
        self.output_size = image_size // 4 if isinstance(network, Tower) and not isinstance(
            network, Pool) else 1

    def build(self, frames_shape, viewpoints_shape):
        if not self.network.built:  # a deserialised network arrives built
            self.network.build((None, *frames_shape[2:]), (None, viewpoints_shape[-1]))

    def call(self, frames, viewpoints, view_mask=None):
        """frames [B, M, H, W, 3], viewpoints [B, M, 7], view_mask [B, M] or None → r
        [B, h, w, C] (h = H/4 or 1). (Not `mask`: Keras gives that name its own meaning.)"""
        shape = ops.shape(frames)
        batch, views = shape[0], shape[1]
        size, channels = self.output_size, self.network.channels

        def summed():
            flat = self.network(
                ops.reshape(frames, (-1, *frames.shape[2:])),
                ops.reshape(viewpoints, (-1, viewpoints.shape[-1])),
            )
            per_view = ops.reshape(flat, (batch, views, size, size, channels))
            if view_mask is not None:
                per_view = per_view * ops.cast(view_mask, per_view.dtype)[:, :, None, None, None]
            return ops.sum(per_view, axis=1)

        def empty():
            return ops.zeros((batch, size, size, channels), dtype=self.compute_dtype)

        # A zero-sized batch does not run through TF's CPU convolutions, hence the branch.
        return ops.cond(views > 0, summed, empty)

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "image_size": self.image_size,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
