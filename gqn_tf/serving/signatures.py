"""The exported SavedModel (docs/design.md §4): TF Serving signatures over a trained GQN.

`GQNServingModule` wraps a model in a `tf.Module` whose `tf.function`s take what a client of
the raw datasets holds: frames in [0, 1] (or JPEG bytes) and raw 5-dim cameras, which the graph
maps to viewpoints with the pipeline's own `transform_cameras` (docs/design.md §5). One export serves
any batch size B and any number of context views M >= 0.

Signatures (inputs → outputs):

- `serving_default`: context_frames [B, M, H, W, 3] float32 in [0, 1], context_cameras
  [B, M, 5], query_camera [B, 5] → image [B, H, W, 3] in [0, 1], a sample from the prior
  (Algorithm S3) with a fresh random seed per call.
- `generate_seeded`: the same inputs and seed int32 [2] → image; a pure function of its inputs.
- `represent`: context_frames, context_cameras → representation r [B, h, w, C].
- `generate_jpeg`: context_jpeg [B, M] string (JPEG bytes), context_cameras, query_camera →
  image_jpeg_bytes [B] string (JPEG). TF Serving's REST API base64-encodes outputs whose name
  ends in `_bytes`, hence the name.

Inputs are validated in the graph before the network sees them: a wrong frame size, channel
count, camera width, value range or batch/view count mismatch stops with an InvalidArgumentError
whose message names the input and the expected shape. The ranks are fixed by the signatures, so
a wrong rank is refused when the signature is called, also naming the input. The frame and
camera sizes are left unknown in the signatures (-1 in `saved_model_cli`) on purpose: a size
known to the graph would make its check a no-op, and the network would fail deep inside instead.
"""

import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

from gqn_tf.data import records
from gqn_tf.data.cameras import RAW_CAMERA_DIM, transform_cameras

SERVING_DEFAULT = "serving_default"
GENERATE_SEEDED = "generate_seeded"
REPRESENT = "represent"
GENERATE_JPEG = "generate_jpeg"
SIGNATURES = (SERVING_DEFAULT, GENERATE_SEEDED, REPRESENT, GENERATE_JPEG)
# Written beside the SavedModel: what a client needs to know that the signatures leave open.
CONFIG_FILE = os.path.join("assets.extra", "gqn_config.json")

_CHANNELS = 3
_INT32_MAX = 2**31 - 1


def _frames_spec(dtype=tf.float32):
    return tf.TensorSpec([None, None, None, None, None], dtype, name="context_frames")


_CONTEXT_CAMERAS = tf.TensorSpec([None, None, None], tf.float32, name="context_cameras")
_QUERY_CAMERA = tf.TensorSpec([None, None], tf.float32, name="query_camera")
_SEED = tf.TensorSpec([2], tf.int32, name="seed")
_CONTEXT_JPEG = tf.TensorSpec([None, None], tf.string, name="context_jpeg")


def _check(condition, message, *data):
    """A `tf.Assert` that prints `message` then `data` (shapes) when `condition` is False."""
    return tf.debugging.Assert(condition, [message, *data], summarize=8)


def _random_seed():
    """A fresh int32 [2] seed per call. Explicit zero op seeds ask TensorFlow for an
    OS-seeded generator, so even a global seed set before exporting does not fix it."""
    return tf.raw_ops.RandomUniformInt(
        shape=[2], minval=0, maxval=_INT32_MAX, seed=0, seed2=0)


class GQNServingModule(tf.Module):
    """A GQN with TF Serving signatures; see the module docstring for their contract."""

    def __init__(self, model, name="gqn_serving"):
        super().__init__(name=name)
        self.model = model  # tracked: its variables are saved with the functions
        self.image_size = int(model.gqn_config.image_size)

    # --- Validation at the boundary ----------------------------------------------------------

    def _expected_frames(self, what="context_frames"):
        size = self.image_size
        return f"{what} must be [B, M, {size}, {size}, 3] float32 in [0, 1]"

    def _check_context(self, frames, cameras):
        """Checks frames [B, M, H, W, 3] and raw cameras [B, M, 5]; returns them with the
        frame size, channels and camera width known to the graph."""
        size, frames_shape, cameras_shape = self.image_size, tf.shape(frames), tf.shape(cameras)
        expected = self._expected_frames()
        checks = [
            _check(tf.reduce_all(frames_shape[2:] == [size, size, _CHANNELS]),
                   f"{expected} (B scenes, M context views); got shape", frames_shape),
            _check(tf.logical_and(tf.reduce_min(frames) >= 0.0, tf.reduce_max(frames) <= 1.0),
                   f"{expected}: values are outside [0, 1] (divide 8-bit pixels by 255); got "
                   f"min, max", tf.reduce_min(frames), tf.reduce_max(frames)),
            _check(cameras_shape[2] == RAW_CAMERA_DIM,
                   "context_cameras must be [B, M, 5] raw cameras (x, y, z, yaw, pitch); got "
                   "shape", cameras_shape),
            _check(tf.reduce_all(cameras_shape[:2] == frames_shape[:2]),
                   "context_cameras must have one camera per context frame: its [B, M] must "
                   "match context_frames; got context_cameras shape", cameras_shape,
                   "context_frames shape", frames_shape),
        ]
        with tf.control_dependencies(checks):
            frames = tf.ensure_shape(tf.identity(frames), [None, None, size, size, _CHANNELS])
            cameras = tf.ensure_shape(tf.identity(cameras), [None, None, RAW_CAMERA_DIM])
        return frames, cameras

    def _check_query(self, query_camera, batch):
        query_shape = tf.shape(query_camera)
        checks = [
            _check(query_shape[1] == RAW_CAMERA_DIM,
                   "query_camera must be [B, 5] raw cameras (x, y, z, yaw, pitch); got shape",
                   query_shape),
            _check(query_shape[0] == batch,
                   "query_camera must have one camera per scene: its B must match the context's; "
                   "got query_camera shape", query_shape, "context batch size", batch),
        ]
        with tf.control_dependencies(checks):
            return tf.ensure_shape(tf.identity(query_camera), [None, RAW_CAMERA_DIM])

    def _decode_context(self, context_jpeg):
        """JPEG bytes [B, M] → frames [B, M, H, W, 3] in [0, 1], decoded as the pipeline does.

        The checks run on all frames before any decoding (JPEG markers, then the size from the
        headers), so a bad frame is named instead of failing inside the decoding loop."""
        size = self.image_size
        jpegs = tf.reshape(context_jpeg, [-1])
        is_jpeg = tf.strings.substr(context_jpeg, 0, 2) == records.JPEG_START  # [B, M]
        jpeg_check = _check(tf.reduce_all(is_jpeg),
                            "context_jpeg must hold JPEG-encoded frames; these [scene, view] "
                            "are not JPEGs:", tf.where(~is_jpeg))
        with tf.control_dependencies([jpeg_check]):
            shapes = tf.map_fn(tf.io.extract_jpeg_shape, jpegs,
                               fn_output_signature=tf.TensorSpec([3], tf.int32))
        sizes = tf.reshape(shapes[:, :2], tf.concat([tf.shape(context_jpeg), [2]], 0))
        right_size = tf.reduce_all(sizes == size, axis=-1)  # [B, M]
        size_check = _check(
            tf.reduce_all(right_size),
            f"context_jpeg frames must be {size}x{size} JPEGs (the model's frame size); these "
            f"[scene, view] are not:", tf.where(~right_size), "with [height, width]",
            tf.boolean_mask(sizes, ~right_size))
        with tf.control_dependencies([size_check]):
            images = tf.map_fn(
                lambda jpeg: tf.ensure_shape(tf.io.decode_jpeg(jpeg, channels=_CHANNELS),
                                             [size, size, _CHANNELS]),
                jpegs, fn_output_signature=tf.TensorSpec([size, size, _CHANNELS], tf.uint8))
        images = tf.cast(images, tf.float32) * (1.0 / 255.0)
        return tf.reshape(images, tf.concat([tf.shape(context_jpeg), [size, size, _CHANNELS]], 0))

    # --- The model on raw cameras ------------------------------------------------------------

    def _generate(self, context_frames, context_cameras, query_camera, seed):
        frames, cameras = self._check_context(context_frames, context_cameras)
        query = self._check_query(query_camera, tf.shape(frames)[0])
        return self.model.generate(
            frames, transform_cameras(cameras), transform_cameras(query), seed=seed)

    # --- Signatures ----------------------------------------------------------------------------

    @tf.function(input_signature=[_frames_spec(), _CONTEXT_CAMERAS, _QUERY_CAMERA])
    def serving_default(self, context_frames, context_cameras, query_camera):
        """A sample of the query view with a fresh random seed (not reproducible)."""
        image = self._generate(context_frames, context_cameras, query_camera, _random_seed())
        return {"image": image}

    @tf.function(input_signature=[_frames_spec(), _CONTEXT_CAMERAS, _QUERY_CAMERA, _SEED])
    def generate_seeded(self, context_frames, context_cameras, query_camera, seed):
        """A sample of the query view; the same seed and inputs give the same image."""
        return {"image": self._generate(context_frames, context_cameras, query_camera, seed)}

    @tf.function(input_signature=[_frames_spec(), _CONTEXT_CAMERAS])
    def represent(self, context_frames, context_cameras):
        """The scene representation r = Σ_k f(x^k, v^k) (r = 0 when M = 0)."""
        frames, cameras = self._check_context(context_frames, context_cameras)
        return {"representation": self.model.represent(frames, transform_cameras(cameras))}

    @tf.function(input_signature=[_CONTEXT_JPEG, _CONTEXT_CAMERAS, _QUERY_CAMERA])
    def generate_jpeg(self, context_jpeg, context_cameras, query_camera):
        """`serving_default` on JPEG bytes: frames in, a JPEG of the sample out."""
        frames = self._decode_context(context_jpeg)
        image = self._generate(frames, context_cameras, query_camera, _random_seed())
        pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
        jpegs = tf.map_fn(lambda x: tf.io.encode_jpeg(x, quality=95), pixels,
                          fn_output_signature=tf.TensorSpec([], tf.string))
        return {"image_jpeg_bytes": jpegs}

    def signatures(self):
        return {name: getattr(self, name) for name in SIGNATURES}


# --- Writing an export -----------------------------------------------------------------------

def existing_versions(export_base):
    """The numeric version folders under `export_base`, sorted."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base)
                  if re.fullmatch(r"\d+", name) and os.path.isdir(os.path.join(export_base, name)))


def next_version(export_base):
    """1 + the largest numeric version under `export_base`, or 1."""
    versions = existing_versions(export_base)
    return versions[-1] + 1 if versions else 1


def export_saved_model(model, export_base, version=None, overwrite=False, metadata=None):
    """Writes `model` as a SavedModel at `export_base/<version>/`, the layout of TF Serving.

    version: an int >= 1, default `next_version(export_base)`. An existing version is refused
    unless `overwrite`. The export is written to a temporary folder beside it and renamed, so
    a server watching `export_base` never sees half a model. `metadata` (JSON-serialisable) is
    stored with the model config in `assets.extra/gqn_config.json`. Returns the version's path.
    """
    version = next_version(export_base) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}.")
    os.makedirs(export_base, exist_ok=True)
    target = os.path.join(export_base, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target} already exists: pass another version, none (the next free one is "
            f"{next_version(export_base)}), or overwrite=True (--overwrite).")
    # A name TF Serving ignores (not numeric) in the same file system, so the rename is atomic.
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_base)
    try:
        module = GQNServingModule(model)
        tf.saved_model.save(module, staging, signatures=module.signatures())
        os.makedirs(os.path.join(staging, os.path.dirname(CONFIG_FILE)))
        with open(os.path.join(staging, CONFIG_FILE), "w") as f:
            json.dump({"model": model.gqn_config.to_dict(), "signatures": list(SIGNATURES),
                       **(metadata or {})}, f, indent=2, sort_keys=True)
        if os.path.exists(target):
            old = tempfile.mkdtemp(prefix=f".old-{version}-", dir=export_base)
            os.replace(target, os.path.join(old, "model"))
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return target


def saved_model_op_types(export_dir):
    """Every op type in a SavedModel's graphs and function library: {op type: [node names]}."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    found = {}
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        functions = {function.signature.name for function in graph.library.function}
        nodes = [(node, node.name) for node in graph.node] + [
            (node, f"{function.signature.name}/{node.name}")
            for function in graph.library.function for node in function.node_def]
        for node, where in nodes:
            if node.op not in functions:  # a call of a library function is not an op
                found.setdefault(node.op, []).append(where)
    return found
