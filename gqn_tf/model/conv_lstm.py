"""The convolutional LSTM cell inside the generator and inference cores (C^g, C^e)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gqn_tf")
class ConvLSTMCell(keras.layers.Layer):
    """A ConvLSTM cell: one convolution over [h, input] gives the four gates (Fig. S2)."""

    def __init__(self, filters=128, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.gates = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", name="gates")

    def build(self, inputs_shape):
        self.gates.build((*inputs_shape[:-1], inputs_shape[-1] + self.filters))

    def call(self, inputs, state):
        cell, hidden = state
        gates = self.gates(ops.concatenate([hidden, inputs], axis=-1))
        forget, input_, output, candidate = ops.split(gates, 4, axis=-1)
        cell = ops.sigmoid(forget) * cell + ops.sigmoid(input_) * ops.tanh(candidate)
        hidden = ops.sigmoid(output) * ops.tanh(cell)
        return cell, hidden

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}
