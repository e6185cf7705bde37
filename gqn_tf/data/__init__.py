"""Readers for DeepMind's original `gqn-datasets` TFRecord files."""

from gqn_tf.data.cameras import CAMERA_DIM, RAW_CAMERA_DIM, transform_cameras
from gqn_tf.data.datasets import DATASETS, DEFAULT_DATA_DIR, DatasetInfo, get_dataset_info
