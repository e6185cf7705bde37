"""The one camera transform (docs/design.md §5 "One camera transform").

The raw datasets store 5 numbers per view: x, y, z, yaw, pitch (radians). Every consumer
(the input pipeline, the exported SavedModel signatures, client code, the reader without
TensorFlow) turns them into the 7-dim viewpoint with this function, in the order of DeepMind's
reader: `[x, y, z, sin(yaw), cos(yaw), sin(pitch), cos(pitch)]`. It is written in `keras.ops`,
so on the TensorFlow backend it is TensorFlow ops (inside tf.data and SavedModels alike) and on
JAX it runs without TensorFlow. Keras (and so TensorFlow) is imported when the function is first
called, so that modules that only name shards (records, shards) start without it.
"""

RAW_CAMERA_DIM = 5
CAMERA_DIM = 7


def transform_cameras(raw):
    """Maps raw cameras [..., 5] to viewpoints [..., 7] (float32), in the reader's order."""
    from keras import ops

    raw = ops.convert_to_tensor(raw, "float32")
    position, yaw, pitch = raw[..., :3], raw[..., 3:4], raw[..., 4:5]
    return ops.concatenate(
        [position, ops.sin(yaw), ops.cos(yaw), ops.sin(pitch), ops.cos(pitch)], axis=-1
    )
