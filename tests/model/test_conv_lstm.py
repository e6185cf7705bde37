import keras
import numpy as np

from gqn_tf.model.conv_lstm import ConvLSTMCell


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_shapes_and_known_value_with_constant_gates():
    cell = ConvLSTMCell(filters=4, kernel_size=3)
    cell.build((None, 5, 5, 2))
    kernel, bias = cell.gates.weights
    kernel.assign(np.zeros(kernel.shape, np.float32))
    bias.assign(np.repeat(np.array([1.0, -0.5, 0.3, 2.0], np.float32), 4))  # f, i, o, s
    c0 = np.full((1, 5, 5, 4), 0.7, np.float32)
    c, h = cell(np.ones((1, 5, 5, 2), np.float32), (c0, np.zeros_like(c0)))
    want_c = _sigmoid(1.0) * 0.7 + _sigmoid(-0.5) * np.tanh(2.0)
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-5)
    np.testing.assert_allclose(h.numpy(), _sigmoid(0.3) * np.tanh(want_c), rtol=1e-5)


def test_config_round_trip():
    cell = ConvLSTMCell(filters=6, kernel_size=3, name="c")
    clone = ConvLSTMCell.from_config(cell.get_config())
    assert (clone.filters, clone.kernel_size, clone.name) == (6, 3, "c")
    assert keras.saving.get_registered_name(ConvLSTMCell) == "gqn_tf>ConvLSTMCell"
