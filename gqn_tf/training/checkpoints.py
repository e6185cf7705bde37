"""The run directory: its config file and checkpoints, and loading a model back from it.

A run directory (`--model_dir`) holds `run_config.json` (the model config, the dataset and the
training flags) and `checkpoints/` written by `tf.train.CheckpointManager` with the model, the
optimizer and so the step counter (`optimizer.iterations`). `load_model` rebuilds a GQN from a
run directory (latest checkpoint), a checkpoint prefix inside one, or a `.keras` file.

TensorFlow is imported only by the functions that use its checkpoints: the run config and the
compact files also serve the JAX trainer (jax_train.py), which runs without TensorFlow.
"""

import json
import os

import keras

from gqn_tf import files
from gqn_tf.model import GQN, GQNConfig

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


def write_run_config(model_dir, model_config, **extra):
    """Writes `run_config.json` atomically: {"model": config fields, **extra}."""
    os.makedirs(model_dir, exist_ok=True)

    return files.write_json(os.path.join(model_dir, RUN_CONFIG),
                            {"model": model_config.to_dict(), **extra}, indent=2, sort_keys=True)


def check_same_model(model_dir, model_config):
    """Refuses to continue the run saved in `model_dir` with another model config (a
    ValueError naming the fields that differ). Callers check only once the run has saved
    something: a run_config.json from a start that failed before its first save holds nothing
    and is replaced."""
    if not os.path.exists(os.path.join(model_dir, RUN_CONFIG)):
        return
    previous = read_run_config(model_dir).get("model")
    if previous is not None and GQNConfig(**previous) != model_config:
        changed = {k: (previous.get(k), v) for k, v in model_config.to_dict().items()
                   if previous.get(k) != v}
        raise ValueError(
            f"{model_dir} holds a run of another model config (field: (saved, requested)): "
            f"{changed}. Pass the same --preset and overrides to resume it, or a new "
            f"--model_dir to start a new run.")


def read_run_config(model_dir):
    path = os.path.join(model_dir, RUN_CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{model_dir!r} is not a gqn-tf run directory: it has no {RUN_CONFIG}. Pass the "
            f"--model_dir that train.py wrote, or a .keras file."
        )
    with open(path) as f:
        return json.load(f)


def make_checkpoint(model, optimizer=None, **extra):
    """The object graph every checkpoint holds: the model and, when training, the optimizer.

    `extra` adds more trackables (the training loop adds the input iterator as `data`);
    readers that only want the model ignore them.
    """
    import tensorflow as tf

    if optimizer is None:
        return tf.train.Checkpoint(model=model, **extra)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, **extra)


def checkpoint_manager(checkpoint, model_dir, max_to_keep=5):
    import tensorflow as tf

    return tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, CHECKPOINT_DIR), max_to_keep=max_to_keep
    )


def latest_checkpoint(model_dir):
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))


def checkpoint_prefixes(model_dir):
    """The prefixes of the run's checkpoints still on disk, oldest first (the ones
    `tf.train.CheckpointManager` keeps: `--keep_checkpoints` of them)."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(model_dir, CHECKPOINT_DIR))
    if state is None:
        return []
    return [p for p in state.all_model_checkpoint_paths if tf.io.gfile.exists(p + ".index")]


def load_averaged_model(model_dir, count):
    """A GQN whose every weight is the mean of that weight over the `count` latest checkpoints
    of the run directory `model_dir` (the run's recent iterates, averaged: at a small, constant
    learning rate they scatter around a slowly moving point, and their mean often renders
    better than the latest of them; evaluate both).

    Returns (model, info) as `load_model` does for the latest checkpoint (its source, step and
    compute seconds), with "averaged_steps": the steps of the checkpoints averaged, oldest
    first. Raises FileNotFoundError when `model_dir` has no checkpoint and ValueError when it
    keeps fewer than `count`.
    """
    import numpy as np

    if count < 1:
        raise ValueError(f"Average at least 1 checkpoint, got {count}.")
    if not os.path.isdir(model_dir):
        raise ValueError(f"{model_dir!r} is not a run directory: averaging reads a train.py "
                         f"run directory's latest checkpoints.")
    prefixes = checkpoint_prefixes(model_dir)
    if not prefixes:
        raise FileNotFoundError(f"No checkpoint in {os.path.join(model_dir, CHECKPOINT_DIR)!r}: "
                                f"train first.")
    if count > len(prefixes):
        raise ValueError(
            f"{model_dir} keeps {len(prefixes)} checkpoint(s), fewer than the {count} to "
            f"average: average at most {len(prefixes)}, or train on with --keep_checkpoints "
            f"{count} (or more) until it has written {count}.")
    total, steps = None, []
    for prefix in prefixes[-count:]:
        model, info = load_model(prefix)
        steps.append(info["step"])
        weights = [np.asarray(v.numpy(), np.float64) for v in model.weights]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    for variable, summed in zip(model.weights, total):
        variable.assign((summed / count).astype(np.float32))
    return model, {**info, "averaged_steps": steps}


COMPACT_SUFFIX = ".npz"
_COMPACT_FORMAT = "gqn-tf compact weights 1"


def _weight_names(model):
    """The weights' paths without the model's own (uniquified) name: "representation/..."."""
    return [v.path.split("/", 1)[-1] for v in model.weights]


def save_compact(model, path, metadata=None):
    """Saves a GQN's config and weights, rounded to float16, in one `.npz` file (half the
    size of a `.keras` file, for shipping a pretrained model). `metadata`: a JSON-able dict
    (data, command, step) kept in the file. `load_model` reads it back in float32."""
    import numpy as np

    arrays = {f"weight_{i}": np.asarray(v.numpy(), np.float16)
              for i, v in enumerate(model.weights)}
    header = {"format": _COMPACT_FORMAT, "config": model.gqn_config.to_dict(),
              "names": _weight_names(model), "metadata": metadata or {}}
    with open(path, "wb") as f:
        np.savez_compressed(f, header=np.array(json.dumps(header)), **arrays)
    return path


def load_compact(path):
    """(model, header) from a `save_compact` file; the float16 weights are cast to float32."""
    import numpy as np

    with np.load(path) as data:
        header = json.loads(str(data["header"]))
        if header.get("format") != _COMPACT_FORMAT:
            raise ValueError(f"{path!r} is not a gqn-tf compact weights file.")
        model = GQN(GQNConfig(**header["config"]))
        if _weight_names(model) != header["names"]:
            raise ValueError(f"{path!r} holds other weights than a GQN of its config "
                             f"(written by another version?).")
        for i, variable in enumerate(model.weights):
            variable.assign(data[f"weight_{i}"].astype(np.float32))
    return model, header


def load_model(path):
    """A GQN from a `.keras` file, a compact `.npz` file (`save_compact`), a run directory
    (latest checkpoint) or a checkpoint prefix.

    Returns (model, info) where info has "source" (the file or checkpoint read), "step"
    (the optimizer step of the checkpoint or the one the compact file records, None for a
    `.keras` file) and "compute_seconds" (the run's cumulative CPU and wall seconds that the
    checkpoint or compact file records, a dict of gqn_tf/training/compute.py's COMPUTE, or
    None). Compact and .keras files load without TensorFlow (on Keras' JAX backend).
    """
    if str(path).endswith(COMPACT_SUFFIX):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such model file: {path!r}.")
        model, header = load_compact(path)
        return model, {"source": str(path), "step": header["metadata"].get("step"),
                       "compute_seconds": header["metadata"].get("compute_seconds")}
    if str(path).endswith(".keras"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such .keras file: {path!r}.")
        return keras.models.load_model(path), {"source": str(path), "step": None,
                                               "compute_seconds": None}
    import tensorflow as tf

    if os.path.isdir(path):
        model_dir, prefix = path, latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(
                f"No checkpoint in {os.path.join(path, CHECKPOINT_DIR)!r}: train first "
                f"(python train.py --model_dir {path} ...) or pass a .keras file."
            )
    elif tf.io.gfile.exists(str(path) + ".index"):
        prefix = str(path)
        model_dir = os.path.dirname(os.path.dirname(prefix))
    else:
        raise FileNotFoundError(
            f"{path!r} is neither a run directory, a checkpoint prefix, a .keras file nor a "
            f"compact .npz file."
        )
    config = GQNConfig(**read_run_config(model_dir)["model"])
    model = GQN(config)
    step = tf.Variable(0, dtype=tf.int64)
    # The optimizer's slots are not needed to predict; only its step counter is read back.
    optimizer_step = tf.train.Checkpoint(_iterations=step)  # Keras' name for it
    tf.train.Checkpoint(model=model, optimizer=optimizer_step).read(prefix).expect_partial()
    return model, {"source": prefix, "step": int(step.numpy()),
                   "compute_seconds": compute_seconds_of(prefix)}


def compute_seconds_of(prefix):
    """The run's cumulative compute seconds saved in the checkpoint `prefix` (a dict of
    compute.COMPUTE), or None for a checkpoint from before they were saved."""
    import tensorflow as tf

    from gqn_tf.training import compute

    reader = tf.train.load_checkpoint(prefix)
    key = "compute_seconds/.ATTRIBUTES/VARIABLE_VALUE"
    if not reader.has_tensor(key):
        return None
    return dict(zip(compute.COMPUTE, (float(x) for x in reader.get_tensor(key))))
