"""The one camera transform (docs/design.md §5 "One camera transform").

The raw datasets store 5 numbers per view: x, y, z, yaw, pitch (radians). Every consumer
(the input pipeline, the exported SavedModel signatures, client code) turns them into the
7-dim viewpoint with this function, in the order of DeepMind's reader:
`[x, y, z, sin(yaw), cos(yaw), sin(pitch), cos(pitch)]`.
"""

import tensorflow as tf

RAW_CAMERA_DIM = 5
CAMERA_DIM = 7


def transform_cameras(raw):
    """Maps raw cameras [..., 5] to viewpoints [..., 7] (float32), in the reader's order."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    position, yaw, pitch = raw[..., :3], raw[..., 3:4], raw[..., 4:5]
    return tf.concat(
        [position, tf.sin(yaw), tf.cos(yaw), tf.sin(pitch), tf.cos(pitch)], axis=-1
    )
