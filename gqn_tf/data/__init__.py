"""Readers for DeepMind's original `gqn-datasets` TFRecord files.

Importing this package does not import TensorFlow (the scripts' `--help` stays fast); the camera
names below load `gqn_tf.data.cameras`, and with it Keras (TensorFlow on its default backend),
when first used.
"""

from gqn_tf.data.datasets import DATASETS, DEFAULT_DATA_DIR, DatasetInfo, get_dataset_info

_CAMERA_NAMES = ("CAMERA_DIM", "RAW_CAMERA_DIM", "transform_cameras")


def __getattr__(name):
    if name in _CAMERA_NAMES:
        from gqn_tf.data import cameras
        return getattr(cameras, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
