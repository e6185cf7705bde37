"""The run directory: its config file and checkpoints, and loading a model back from it.

A run directory (`--model_dir`) holds `run_config.json` (the model config, the dataset and the
training flags) and `checkpoints/` written by `tf.train.CheckpointManager` with the model, the
optimizer and so the step counter (`optimizer.iterations`). `load_model` rebuilds a GQN from a
run directory (latest checkpoint), a checkpoint prefix inside one, or a `.keras` file.
"""

import json
import os

import keras
import tensorflow as tf

from gqn_tf.model import GQN, GQNConfig

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


def write_run_config(model_dir, model_config, **extra):
    """Writes `run_config.json` atomically: {"model": config fields, **extra}."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, RUN_CONFIG)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump({"model": model_config.to_dict(), **extra}, f, indent=2, sort_keys=True)
    os.replace(temporary, path)
    return path


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
    if optimizer is None:
        return tf.train.Checkpoint(model=model, **extra)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, **extra)


def checkpoint_manager(checkpoint, model_dir, max_to_keep=5):
    return tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, CHECKPOINT_DIR), max_to_keep=max_to_keep
    )


def latest_checkpoint(model_dir):
    return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))


def load_model(path):
    """A GQN from a `.keras` file, a run directory (latest checkpoint) or a checkpoint prefix.

    Returns (model, info) where info has "source" (the file or checkpoint read) and "step"
    (the optimizer step of the checkpoint, or None for a `.keras` file).
    """
    if str(path).endswith(".keras"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such .keras file: {path!r}.")
        return keras.models.load_model(path), {"source": str(path), "step": None}
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
            f"{path!r} is neither a run directory, a checkpoint prefix nor a .keras file."
        )
    config = GQNConfig(**read_run_config(model_dir)["model"])
    model = GQN(config)
    step = tf.Variable(0, dtype=tf.int64)
    # The optimizer's slots are not needed to predict; only its step counter is read back.
    optimizer_step = tf.train.Checkpoint(_iterations=step)  # Keras' name for it
    tf.train.Checkpoint(model=model, optimizer=optimizer_step).read(prefix).expect_partial()
    return model, {"source": prefix, "step": int(step.numpy())}
