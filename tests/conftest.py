"""Shared fixtures. TensorFlow is told here, before it starts, to show two logical CPU devices
so that MirroredStrategy can be tested on a machine without GPUs."""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib

import numpy as np
import pytest

from gqn_tf import cli

tf = cli.import_tensorflow()  # without its C++ start-up lines, which xdist's controller prints

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def sample_dir():
    """The bundled sample: `data/sample/shepard_metzler_7_parts/{train,test}/`."""
    return SAMPLE_DIR


def random_batch(batch_size=2, context_size=3, image_size=64, seed=0):
    """A batch in the pipeline's format (docs/design.md §4) filled with random values."""
    rng = np.random.default_rng(seed)
    b, m, s = batch_size, context_size, image_size
    return {
        "context_frames": rng.uniform(size=(b, m, s, s, 3)).astype(np.float32),
        "context_cameras": rng.normal(size=(b, m, 7)).astype(np.float32),
        "query_camera": rng.normal(size=(b, 7)).astype(np.float32),
        "target": rng.uniform(size=(b, s, s, 3)).astype(np.float32),
    }


@pytest.fixture(scope="session")
def make_batch():
    """Returns `random_batch`, a factory of random batches in the pipeline's format."""
    return random_batch


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, sample_dir):
    """A train.py-style run directory: a `tiny` GQN trained 3 steps on the bundled sample,
    with run_config.json and one checkpoint (step 3)."""
    from gqn_tf.data import pipeline
    from gqn_tf.model import GQN, get_preset
    from gqn_tf.training import checkpoints, schedules
    from gqn_tf.training.step import TrainStep

    model_dir = tmp_path_factory.mktemp("tiny_run")
    config = get_preset("tiny")
    model, optimizer = GQN(config), schedules.make_optimizer()
    step = TrainStep(model, optimizer, 4, seed=1)
    dataset = pipeline.make_dataset("shepard_metzler_7_parts", sample_dir, "train", 4, seed=0,
                                    max_context_size=3)
    for batch, _ in zip(dataset, range(3)):
        step(batch)
    checkpoints.write_run_config(model_dir, config, dataset="shepard_metzler_7_parts",
                                 schedule=dataclasses.asdict(schedules.ScheduleConfig()))
    checkpoints.checkpoint_manager(checkpoints.make_checkpoint(model, optimizer),
                                   model_dir).save()
    return model_dir


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """One persistent XLA cache for this test session's JAX processes (train_jax.py, the GPU
    scripts rehearsed on CPU), which inherit it through the environment: the many short runs
    of one configuration compile its step once instead of once per process. It starts empty, so
    every session still compiles each program at least once."""
    cache = tmp_path_factory.mktemp("jax_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
        yield cache
