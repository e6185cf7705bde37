"""Starting a GQN from a trained one: the same config, or the same with wider cores or more
generative steps.

Growing the model (more `hidden_channels`, or more unshared steps `num_layers`) keeps what a
trained model learned and adds room to learn more. The grown model starts as the trained model's
renderer exactly:

- **Wider cores.** Each weight keeps its trained values in the places of the old channels; the new
  hidden units get their fresh random input weights (so they are active from the first step), but
  every weight that *reads* a new hidden unit starts at zero, so nothing downstream sees them yet.
  Their outgoing weights then receive gradients (the units are active), and the model grows into
  them as it trains.
- **More steps.** Steps L .. L' - 1 are appended after the trained ones, with fresh cores whose
  canvas update starts at zero: they carry the state on but leave the canvas, and so the image,
  as the trained steps drew it. Their latents add KL terms to the ELBO from the start (the heads
  are shared by all steps), which training then lowers. Shared cores cannot take more steps
  without changing what the trained steps compute, so there the count must stay.

What reads a core's hidden state h (and so has rows to zero when it widens), for each core:
- C^g's gates: input [h^g, v^q, r, z_l], outputs the four gates [f, i, o, g], each `hidden` wide;
- C^g's canvas update (a transposed convolution: kernel [4, 4, canvas, hidden]);
- C^e's gates: input [h^e, x^q↓, v^q, r, h^g, u↓], the same four gates;
- the prior head η_π (reads h^g) and the posterior head η_e (reads h^e).
Every other weight has the same shape in both models and is copied.
"""

import numpy as np

from gqn_tf.model.gqn import CAMERA_DIM, IMAGE_CHANNELS

GROWABLE = ("hidden_channels", "num_layers")


def config_change(source_config, target_config):
    """{field: (source's, target's)} of the fields that differ between two GQN configs."""
    source, target = source_config.to_dict(), target_config.to_dict()
    return {name: (value, target[name]) for name, value in source.items()
            if target[name] != value}


def check_startable(source_config, target_config, source_name):
    """Raises ValueError naming the fields unless a model of `target_config` can start from one
    of `source_config`: the same config, or a grown one (module docstring)."""
    changed = config_change(source_config, target_config)
    fixed = {name: values for name, values in changed.items() if name not in GROWABLE}
    shrunk = {name: values for name, values in changed.items()
              if name in GROWABLE and values[1] < values[0]}
    if fixed or shrunk:
        raise ValueError(
            f"--init_from {source_name} holds another model config (field: (its, requested)): "
            f"{changed}. Pass the --preset, --model and --frame_size it was trained with; only "
            f"{' and '.join(GROWABLE)} may grow (--model hidden_channels=N, N >= its value).")
    if "num_layers" in changed and source_config.shared_cores:
        raise ValueError(
            f"--init_from {source_name} has shared cores: more steps (num_layers "
            f"{changed['num_layers'][0]} -> {changed['num_layers'][1]}) would change what its "
            f"steps draw. Keep --model num_layers={source_config.num_layers}.")
    return changed


def describe(changed):
    """The log's words for `start_from`'s config change: "" when none."""
    if not changed:
        return ""
    grown = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())
    return f", grown ({grown}; what is new starts unread, so it renders as before)"


def _channel_map(blocks):
    """For an axis made of blocks [(old size, new size), ...]: (old indices, their new
    indices), each block's old channels first within its new block."""
    old_index, new_index, old_start, new_start = [], [], 0, 0
    for old_size, new_size in blocks:
        old_index.extend(range(old_start, old_start + old_size))
        new_index.extend(range(new_start, new_start + old_size))
        old_start, new_start = old_start + old_size, new_start + new_size
    return np.asarray(old_index), np.asarray(new_index)


def _hidden_readers(source_config, target_config):
    """{weight path suffix: (input-axis blocks, output-axis blocks or None)} of the weights that
    read a hidden state (module docstring); blocks as in `_channel_map`, None: unchanged."""
    c = source_config
    hidden = (c.hidden_channels, target_config.hidden_channels)
    gates = [hidden] * 4
    conditioning = CAMERA_DIM + c.r_channels
    generator_in = [hidden, (conditioning + c.z_channels,) * 2]
    inference_in = [hidden, (IMAGE_CHANNELS + conditioning,) * 2, hidden,
                    (c.canvas_channels,) * 2]
    readers = {"prior_head/conv/kernel": ([hidden], None),
               "posterior_head/conv/kernel": ([hidden], None)}
    for i in range(1 if c.shared_cores else c.num_layers):
        readers[f"generator_core_{i}/cell/gates/kernel"] = (generator_in, gates)
        readers[f"generator_core_{i}/canvas_update/kernel"] = ([hidden], None)
        readers[f"inference_core_{i}/cell/gates/kernel"] = (inference_in, gates)
        readers[f"generator_core_{i}/cell/gates/bias"] = (None, gates)
        readers[f"inference_core_{i}/cell/gates/bias"] = (None, gates)
    return readers


def _grown_weight(name, source, fresh, readers):
    """`source`'s trained values placed into a copy of `fresh` (the grown model's initial
    value), with the rows that read new hidden units set to zero."""
    if name not in readers:
        if source.shape != fresh.shape:
            raise ValueError(f"Weight {name}: {source.shape} cannot start {fresh.shape}.")
        return source
    inputs, outputs = readers[name]
    # Conv2D kernels are [kh, kw, in, out]; the canvas update's (a transposed convolution)
    # [kh, kw, out, in]; biases [out].
    in_axis, out_axis = ((3, 2) if name.endswith("canvas_update/kernel")
                         else (source.ndim - 2, source.ndim - 1))
    old = [np.arange(size) for size in source.shape]
    new = [np.arange(size) for size in source.shape]
    value = np.array(fresh, copy=True)
    if inputs is not None:
        old[in_axis], new[in_axis] = _channel_map(inputs)
        silent = [slice(None)] * value.ndim
        silent[in_axis] = np.setdiff1d(np.arange(value.shape[in_axis]), new[in_axis])
        value[tuple(silent)] = 0.0
    if outputs is not None:
        old[out_axis], new[out_axis] = _channel_map(outputs)
    value[np.ix_(*new)] = source[np.ix_(*old)]
    return value


def _silent_step(name, fresh):
    """The initial value of a weight of an appended step: fresh, but a generator core's canvas
    update is zero (the step leaves the canvas as it is)."""
    if "generator_core_" in name and "/canvas_update/" in name:
        return np.zeros_like(fresh)
    return fresh


def start_from(model, source, source_name="the model"):
    """Sets `model`'s weights from the trained GQN `source`: copied when the configs match,
    grown (module docstring) when `model` has more hidden channels or steps (the same code:
    with equal configs every weight maps onto itself). Returns the config change {field:
    (source's, model's)}, empty when they match."""
    changed = check_startable(source.gqn_config, model.gqn_config, source_name)
    readers = _hidden_readers(source.gqn_config, model.gqn_config)
    trained = {variable.path.split("/", 1)[-1]: np.asarray(variable) for variable in source.weights}
    for variable in model.weights:
        name, fresh = variable.path.split("/", 1)[-1], np.asarray(variable)
        value = (_grown_weight(name, trained[name], fresh, readers) if name in trained
                 else _silent_step(name, fresh))
        variable.assign(value.astype(fresh.dtype))
    return changed
