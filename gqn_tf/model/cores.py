"""The generator core C^g with its canvas update, and the inference core C^e (Fig. S2)."""

import keras
from keras import ops

from gqn_tf.model.conv_lstm import ConvLSTMCell


@keras.saving.register_keras_serializable(package="gqn_tf")
class GeneratorCore(keras.layers.Layer):
    """C^g: a ConvLSTM over [v^q, r, z_l], then the canvas update u += Δ(h^g) (4x4/4 deconv)."""

    def __init__(self, hidden_channels=128, canvas_channels=128, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_channels = hidden_channels
        self.canvas_channels = canvas_channels
        self.kernel_size = kernel_size
        self.cell = ConvLSTMCell(hidden_channels, kernel_size, name="cell")
        self.canvas_update = keras.layers.Conv2DTranspose(
            canvas_channels, 4, strides=4, name="canvas_update"
        )

    def build(self, inputs_shape):
        self.cell.build(inputs_shape)
        self.canvas_update.build((*inputs_shape[:-1], self.hidden_channels))

    def call(self, inputs, state, canvas, conditioning=None):
        """inputs [B, h, w, *] = [v^q, r, z_l], or z_l alone with the `conditioning` of
        [v^q, r] (conv_lstm.conditioning_gates); state (c^g, h^g) [B, h, w, hidden]; canvas u
        [B, 4h, 4w, canvas]."""
        cell, hidden = self.cell(inputs, state, conditioning)
        return (cell, hidden), canvas + self.canvas_update(hidden)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "canvas_channels": self.canvas_channels,
            "kernel_size": self.kernel_size,
        }


@keras.saving.register_keras_serializable(package="gqn_tf")
class InferenceCore(keras.layers.Layer):
    """C^e: a ConvLSTM over [x^q↓, v^q, r, h^g, u↓], the canvas downsampled by a 4x4/4 conv."""

    def __init__(self, hidden_channels=128, canvas_channels=128, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_channels = hidden_channels
        self.canvas_channels = canvas_channels
        self.kernel_size = kernel_size
        self.canvas_downsample = keras.layers.Conv2D(
            canvas_channels, 4, strides=4, name="canvas_downsample"
        )
        self.cell = ConvLSTMCell(hidden_channels, kernel_size, name="cell")

    def build(self, inputs_shape):
        batch, height, width, channels = inputs_shape
        self.canvas_downsample.build((batch, 4 * height, 4 * width, self.canvas_channels))
        self.cell.build(
            (batch, height, width, channels + self.hidden_channels + self.canvas_channels)
        )

    def call(self, inputs, generator_hidden, canvas, state, conditioning=None):
        """inputs [B, h, w, *] = [x^q↓, v^q, r], or None with their `conditioning`
        (conv_lstm.conditioning_gates); generator_hidden h^g; canvas u; state (c^e, h^e)."""
        features = [generator_hidden, self.canvas_downsample(canvas)]
        if conditioning is None:
            features.insert(0, inputs)
        return self.cell(ops.concatenate(features, axis=-1), state, conditioning)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "canvas_channels": self.canvas_channels,
            "kernel_size": self.kernel_size,
        }
