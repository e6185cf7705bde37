"""The original record format and shard naming of `gqn-datasets` (docs/design.md §1).

A record is an uncompressed `tf.train.Example` holding one scene: `frames`, S JPEG-encoded
frames, and `cameras`, S * 5 floats (x, y, z, yaw, pitch per frame). Shards are named
`<i>-of-<n>.tfrecord` with `i` counting from 1 and both numbers zero-padded to the width of `n`.

TensorFlow is imported only by the functions that build or parse `tf.train.Example`s, so that the
naming helpers also serve the reader that runs without it (standalone.py).
"""

import os
import re

import numpy as np

from gqn_tf.data import cameras as cameras_lib

# Every frame is a JPEG: it starts with the SOI marker and ends with the EOI marker.
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"

# Said after every record or frame number in a message about bad data.
COUNTING_NOTE = " (records and frames count from 0)"

_SHARD_RE = re.compile(r"^(\d+)-of-(\d+)\.tfrecord$")


def feature_spec(sequence_size):
    """The parse spec of one scene with `sequence_size` (S) views."""
    import tensorflow as tf

    return {
        "frames": tf.io.FixedLenFeature([sequence_size], tf.string),
        "cameras": tf.io.FixedLenFeature([sequence_size * cameras_lib.RAW_CAMERA_DIM], tf.float32),
    }


def serialize_scene(jpeg_frames, cameras):
    """Serializes one scene: `jpeg_frames`, S JPEG byte strings; `cameras`, [S, 5] raw cameras."""
    import tensorflow as tf

    cameras = np.asarray(cameras, np.float32)
    if cameras.shape != (len(jpeg_frames), cameras_lib.RAW_CAMERA_DIM):
        raise ValueError(
            f"cameras must have shape [{len(jpeg_frames)}, {cameras_lib.RAW_CAMERA_DIM}] "
            f"for {len(jpeg_frames)} frames, got {list(cameras.shape)}."
        )
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=list(jpeg_frames))),
                "cameras": tf.train.Feature(
                    float_list=tf.train.FloatList(value=cameras.reshape(-1).tolist())
                ),
            }
        )
    )
    return example.SerializeToString()


def shard_name(index, num_shards):
    """The file name of shard `index` (1-based) of `num_shards`: `001-of-900.tfrecord`."""
    if not 1 <= index <= num_shards:
        raise ValueError(f"Shard index {index} is outside 1..{num_shards}.")
    width = len(str(num_shards))
    return f"{index:0{width}d}-of-{num_shards:0{width}d}.tfrecord"


def parse_shard_name(filename):
    """Inverse of `shard_name`: returns (index, num_shards), or None for a foreign file name."""
    match = _SHARD_RE.match(os.path.basename(filename))
    if not match:
        return None
    index, num_shards = match.group(1), match.group(2)
    if len(index) != len(num_shards) or len(num_shards) != len(str(int(num_shards))):
        return None
    return int(index), int(num_shards)


def split_dir(root, dataset, split):
    """`<root>/<dataset>/<split>`, with `~` expanded."""
    return os.path.join(os.path.expanduser(root), dataset, split)
