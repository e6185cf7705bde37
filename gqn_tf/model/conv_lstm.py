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
pass for each core, and each step adds it to the convolution of its own channels only. (One
convolution for all L unshared cores, their gates side by side in its outputs, does the same
work but ran 1.4 to 2.7 times slower on CPU, fwd + bwd, than L separate ones.)

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
    docstring). The taps t are one batched matrix product over the kh·kw kernel positions,
    read in the kernel's own layout, and the masks m(y, i)·m(x, j) one [h·w, kh·kw] matrix."""
    kernel_height, kernel_width, channels, outputs = kernel.shape
    taps = ops.matmul(values[None],  # [kh·kw, B, O]
                      ops.reshape(kernel, (kernel_height * kernel_width, channels, outputs)))
    masks = np.einsum("yi,xj->yxij", same_padding_mask(height, kernel_height),
                      same_padding_mask(width, kernel_width))
    masks = ops.cast(masks.reshape(height * width, kernel_height * kernel_width), values.dtype)
    gates = ops.matmul(masks, ops.reshape(taps, (kernel_height * kernel_width, -1)))
    gates = ops.reshape(gates, (height, width, -1, outputs))
    return ops.transpose(gates, (2, 0, 1, 3))


def conditioning_gates(cell, pieces, height, width):
    """The step-invariant part of a cell's gates, computed once per forward pass: (gates
    [B, height, width, 4 · filters], bias included, and the kernel of the channels that remain
    per step, [h, per-step inputs]). Pass the pair to `ConvLSTMCell.call` as `conditioning`.

    pieces: the step-invariant inputs in the order in which they follow h in the cell's input,
    each [B, C] (constant over the grid) or [B, height, width, C].
    """
    if not pieces:
        raise ValueError("conditioning_gates needs at least one step-invariant input.")
    kernel = ops.cast(cell.gates.kernel, cell.compute_dtype)
    sizes = [cell.filters, *(piece.shape[-1] for piece in pieces)]
    rest = kernel.shape[2] - sum(sizes)
    # One split, whose gradient is one concatenation: slicing the kernel block by block would
    # give each block's gradient as a zero-padded copy of the whole kernel.
    blocks = ops.split(kernel, np.cumsum(sizes).tolist(), axis=2)
    step_kernel = ops.concatenate([blocks[0], blocks[-1]], axis=2) if rest else blocks[0]
    spatial = [(ops.cast(p, kernel.dtype), k) for p, k in zip(pieces, blocks[1:-1])
               if len(p.shape) == 4]
    constant = [(ops.cast(p, kernel.dtype), k) for p, k in zip(pieces, blocks[1:-1])
                if len(p.shape) == 2]
    gates = ops.cast(cell.gates.bias, kernel.dtype)
    for group, convolve in ((spatial, lambda x, k: ops.conv(x, k, padding="same")),
                            (constant, lambda x, k: convolve_constant(x, k, height, width))):
        if group:
            inputs, kernels = zip(*group)
            gates = gates + convolve(ops.concatenate(inputs, axis=-1),
                                     ops.concatenate(kernels, axis=2))
    return gates, step_kernel


@keras.saving.register_keras_serializable(package="gqn_tf")
class ConvLSTMCell(keras.layers.Layer):
    """A ConvLSTM cell: one convolution over [h, input] gives the four gates (Fig. S2)."""

    def __init__(self, filters=128, kernel_size=5, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.gates = keras.layers.Conv2D(4 * filters, kernel_size, padding="same", name="gates")

    def build(self, inputs_shape):
        self.gates.build((*inputs_shape[:-1], inputs_shape[-1] + self.filters))

    def call(self, inputs, state, conditioning=None):
        """inputs [B, h, w, *]; state (c, h). With `conditioning`, the (gates, kernel) pair of
        the module's `conditioning_gates`, `inputs` holds only the channels that follow the
        step-invariant ones, and those are not convolved again."""
        cell, hidden = state
        features = ops.concatenate([hidden, inputs], axis=-1)
        if conditioning is None:
            gates = self.gates(features)
        else:
            invariant_gates, kernel = conditioning
            gates = ops.conv(features, kernel, padding="same") + invariant_gates
        forget, input_, output, candidate = ops.split(gates, 4, axis=-1)
        cell = ops.sigmoid(forget) * cell + ops.sigmoid(input_) * ops.tanh(candidate)
        hidden = ops.sigmoid(output) * ops.tanh(cell)
        return cell, hidden

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}
