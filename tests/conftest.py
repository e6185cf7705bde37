"""Shared fixtures. TensorFlow is told here, before it starts, to show two logical CPU devices
so that MirroredStrategy can be tested on a machine without GPUs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib

import pytest
import tensorflow as tf

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
