"""The table of DeepMind's `gqn-datasets` (docs/design.md §1): one row per dataset."""

import dataclasses
import os

# Where `data/download.py` puts the real data unless told otherwise.
DEFAULT_DATA_DIR = os.environ.get("GQN_DATA_DIR", os.path.join("~", "gqn-datasets"))
BUCKET = "gs://gqn-dataset"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is fixed about one dataset: shard counts, frame size and views per scene (S)."""

    name: str
    train_shards: int
    test_shards: int
    frame_size: int
    sequence_size: int

    def num_shards(self, split):
        return {"train": self.train_shards, "test": self.test_shards}[check_split(split)]


_DATASETS = (
    DatasetInfo("jaco", 3600, 400, 64, 11),
    DatasetInfo("mazes", 1080, 120, 84, 300),
    DatasetInfo("rooms_free_camera_with_object_rotations", 2034, 226, 128, 10),
    DatasetInfo("rooms_ring_camera", 2160, 240, 64, 10),
    DatasetInfo("rooms_free_camera_no_object_rotations", 2160, 240, 64, 10),
    DatasetInfo("shepard_metzler_5_parts", 900, 100, 64, 15),
    DatasetInfo("shepard_metzler_7_parts", 900, 100, 64, 15),
)
DATASETS = {info.name: info for info in _DATASETS}
SPLITS = ("train", "test")
# The version folder the TFDS bridge registers a dataset under (gqn_tf/data/tfds.py).
TFDS_VERSION = "1.0.0"


def get_dataset_info(name):
    """Returns the `DatasetInfo` of `name`, or raises a ValueError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}."
        ) from None


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    return split
