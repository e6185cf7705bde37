"""The convolutional LSTM cell inside the generator and inference cores (C^g, C^e), and the
factorised convolution of the inputs that stay the same over the L steps.

Factorising the step-invariant inputs
-------------------------------------
A cell's gates are one 'same' convolution of the concatenation [h, a, s] of its hidden state h,
the step-invariant conditioning a (v^q and r; for C^e also x^q↓) and the per-step inputs s
(z_l; for C^e h^g_l and u_l↓). A convolution is linear in its input channels, so with the
kernel K cut along its input axis into K_h, K_a, K_s,

    gates_l = conv([h_l, s_l], [K_h, K_s]) + (conv(a, K_a) + bias),

and the bracket is the same at every step: `conditioning_gates` computes it once per forward
pass (for the L unshared cores in one convolution whose outputs are the L cores' gates side by
side), and each step adds it to the convolution of its own channels only.

Where part of `a` is constant over the grid (v^q always, r for the pool and pyramid
representations, whose r is 1x1), its convolution needs no grid at all. With a[b, y, x, c] =
c_b[c] at every position and zero padding outside the grid,

    conv(a, K)[b, y, x, o] = Σ_{i,j} m(y, i) · m(x, j) · t[b, i, j, o],
    t[b, i, j, o] = Σ_c c_b[c] · K[i, j, c, o],

where m(y, i) is 1 when kernel row i at output row y reads a row inside the grid and 0 where it
reads padding (separable in rows and columns, as the padding is). That is kh·kw small matrix
products per image and two mask contractions, instead of h·w·kh·kw·C multiply-adds per output
channel: for the 263 constant channels of a paper-sized core about 250 times fewer.
"""

import keras
import numpy as np
from keras import ops


def same_padding_mask(size, kernel_size):
    """[size, kernel_size] float32: 1 where kernel tap i of a stride-1 'same' convolution at
    output position y reads position y + i - pad inside [0, size), 0 where it reads padding
    (TensorFlow and Keras pad (k - 1) // 2 before and the rest after)."""
    pad = (kernel_size - 1) // 2
    read = np.arange(size)[:, None] + np.arange(kernel_size)[None, :] - pad
    return ((read >= 0) & (read < size)).astype("float32")


def convolve_constant(values, kernel, height, width):
    """ops.conv(values broadcast to [B, height, width, C], kernel, padding="same") without
    broadcasting: values [B, C], kernel [kh, kw, C, O] → [B, height, width, O] (module
    docstring)."""
    kernel_height, kernel_width = kernel.shape[0], kernel.shape[1]
    taps = ops.einsum("bc,ijco->bijo", values, kernel)
    rows = ops.cast(same_padding_mask(height, kernel_height), values.dtype)
    columns = ops.cast(same_padding_mask(width, kernel_width), values.dtype)
    taps = ops.einsum("xj,bijo->bixo", columns, taps)
    return ops.einsum("yi,bixo->byxo", rows, taps)


def conditioning_gates(cells, pieces, height, width):
    """The gates' step-invariant part, bias included, for each cell of `cells` (ConvLSTMCells of
    one layout): a list of [B, height, width, 4 · filters] tensors, one per cell.

    pieces: the step-invariant inputs in the order in which they follow h in the cells' input,
    each [B, C] (constant over the grid) or [B, height, width, C]. The cells' calls then take
    the per-step inputs only, with this as `conditioning_gates`.
    """
    if not pieces:
        raise ValueError("conditioning_gates needs at least one step-invariant input.")
    dtype = cells[0].compute_dtype
    kernels = [ops.cast(cell.gates.kernel, dtype) for cell in cells]
    offset = cells[0].filters
    spatial, constant = ([], []), ([], [])
    for piece in pieces:
        channels = piece.shape[-1]
        # The piece's input rows of every cell's kernel, the cells side by side in the outputs.
        kernel = ops.concatenate([k[:, :, offset:offset + channels] for k in kernels], axis=-1)
        inputs, parts = constant if len(piece.shape) == 2 else spatial
        inputs.append(ops.cast(piece, dtype))
        parts.append(kernel)
        offset += channels
    bias = ops.concatenate([ops.cast(cell.gates.bias, dtype) for cell in cells], axis=-1)
    gates = bias
    if spatial[0]:
        gates = gates + ops.conv(ops.concatenate(spatial[0], axis=-1),
                                 ops.concatenate(spatial[1], axis=2), padding="same")
    if constant[0]:
        gates = gates + convolve_constant(ops.concatenate(constant[0], axis=-1),
                                          ops.concatenate(constant[1], axis=2), height, width)
    return ops.split(gates, len(cells), axis=-1) if len(cells) > 1 else [gates]


@keras.saving.register_keras_serializable(package="gqn_tf")
class ConvLSTMCell(keras.layers.Layer):
    """A ConvLSTM cell: one convolution over [h, input] gives the four gates (Fig. S2)."""

    def __init__(self, filters=128, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.gates = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", name="gates")

    def build(self, inputs_shape):
        self.gates.build((*inputs_shape[:-1], inputs_shape[-1] + self.filters))

    def call(self, inputs, state, conditioning_gates=None):
        """inputs [B, h, w, *]; state (c, h). With `conditioning_gates` (from the module's
        `conditioning_gates`), `inputs` holds only the channels that follow the step-invariant
        ones, and those are not convolved again."""
        cell, hidden = state
        features = ops.concatenate([hidden, inputs], axis=-1)
        if conditioning_gates is None:
            gates = self.gates(features)
        else:
            kernel = ops.cast(self.gates.kernel, self.compute_dtype)
            skipped = kernel.shape[2] - features.shape[-1]
            kernel = ops.concatenate(
                [kernel[:, :, :self.filters], kernel[:, :, self.filters + skipped:]], axis=2)
            gates = ops.conv(features, kernel, padding="same") + conditioning_gates
        forget, input_, output, candidate = ops.split(gates, 4, axis=-1)
        cell = ops.sigmoid(forget) * cell + ops.sigmoid(input_) * ops.tanh(candidate)
        hidden = ops.sigmoid(output) * ops.tanh(cell)
        return cell, hidden

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}
