"""Novel views of one scene along a camera path: an orbit around the object or a pan in place.

Cameras are made in the datasets' raw convention (x, y, z, yaw, pitch; see
`gqn_tf.data.synthetic`): the look direction is (cos p cos y, cos p sin y, sin p), and a camera
that looks at the scene's centre (the origin) from distance d sits at −d times it. The model
sees them through the one camera transform, as it saw the training data.

`render_path` draws K prior samples for every query camera (Algorithm S3) and returns them with
their mean and per-pixel std (the model's uncertainty, as in the paper's Fig. 2C);
`save_gif` and `save_strip` write the animation and a labelled PNG.
"""

import math

import numpy as np
import tensorflow as tf
from PIL import Image

from gqn_tf.data import cameras as cameras_lib
from gqn_tf.data import synthetic
from gqn_tf.evaluation import figures

PATHS = ("orbit", "pan")


def default_path(dataset):
    """An orbit for objects seen from outside (Shepard-Metzler), a pan for scenes seen from
    inside (rooms, mazes, the jaco arm's room)."""
    return "orbit" if dataset.startswith("shepard_metzler") else "pan"


def load_scene(filenames, info, index, frame_size=None):
    """Scene `index` (counting from 0, in file order) of the shards: (frames [S, H, W, 3]
    float32 in [0, 1], resized to `frame_size` if given; raw cameras [S, 5])."""
    from gqn_tf.data import pipeline, records

    found = list(pipeline.read_records(filenames, shuffle=False).skip(index).take(1))
    if not found:
        total = sum(1 for _ in pipeline.read_records(filenames, shuffle=False))
        raise IndexError(f"scene {index} does not exist: the shards hold {total} scenes "
                         f"(counting from 0, the last is {total - 1}).")
    example = tf.io.parse_single_example(found[0]["record"],
                                         records.feature_spec(info.sequence_size))
    frames = tf.stack([tf.io.decode_jpeg(jpeg, channels=3) for jpeg in
                       tf.unstack(example["frames"], num=info.sequence_size)])
    frames = tf.image.convert_image_dtype(frames, tf.float32)
    if frame_size is not None and frame_size != frames.shape[1]:
        frames = tf.image.resize(frames, [frame_size, frame_size], method="bilinear")
    raw = tf.reshape(example["cameras"], [info.sequence_size, cameras_lib.RAW_CAMERA_DIM])
    return frames.numpy(), raw.numpy()


def orbit_cameras(scene_cameras, num_frames, pitch=None):
    """Raw cameras [num_frames, 5] on a circle around the origin, looking at it.

    The radius is the mean distance of the scene's own cameras [S, 5] from the origin; the
    pitch defaults to their mean pitch; the orbit starts at the first camera's yaw and turns
    once around (num_frames yaws, 2π / num_frames apart).
    """
    scene_cameras = np.asarray(scene_cameras, np.float64)
    distance = float(np.mean(np.linalg.norm(scene_cameras[:, :3], axis=-1)))
    pitch = float(np.mean(scene_cameras[:, 4])) if pitch is None else float(pitch)
    yaw = scene_cameras[0, 3] + 2 * math.pi * np.arange(num_frames) / num_frames
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi  # in [-π, π), as the data store it
    position = -distance * synthetic.look_direction(yaw, np.full_like(yaw, pitch))
    return np.concatenate([position, yaw[:, None], np.full((num_frames, 1), pitch)],
                          axis=-1).astype(np.float32)


def pan_cameras(scene_cameras, num_frames, pitch=None):
    """Raw cameras [num_frames, 5] at the first camera's position, turning once around in yaw
    (for rooms and mazes, where the camera stands inside the scene). Pitch: the first camera's
    unless given."""
    first = np.asarray(scene_cameras, np.float64)[0]
    pitch = first[4] if pitch is None else float(pitch)
    yaw = first[3] + 2 * math.pi * np.arange(num_frames) / num_frames
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return np.concatenate([np.tile(first[:3], (num_frames, 1)), yaw[:, None],
                           np.full((num_frames, 1), pitch)], axis=-1).astype(np.float32)


def make_path(kind, scene_cameras, num_frames, pitch=None):
    """The raw query cameras of path `kind` ("orbit" or "pan")."""
    if kind == "orbit":
        return orbit_cameras(scene_cameras, num_frames, pitch)
    if kind == "pan":
        return pan_cameras(scene_cameras, num_frames, pitch)
    raise ValueError(f"Unknown path {kind!r}: use one of {', '.join(PATHS)}.")


def render_path(model, context_frames, context_raw, query_raw, samples=4, seed=0):
    """Renders every query camera of one scene from its context.

    context_frames [M, H, W, 3] in [0, 1]; context_raw [M, 5] and query_raw [N, 5] raw cameras.
    Returns {"samples": [N, K, H, W, 3], "mean": [N, H, W, 3], "std": [N, H, W]} (std: over
    samples, averaged over colour channels). Each query is one batch of K copies, so sample k
    gets the same latent noise at every camera (one hypothesis of the scene followed along the
    path), and the same seed gives the same images.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}.")
    context_frames = np.asarray(context_frames, np.float32)
    context_views = cameras_lib.transform_cameras(np.asarray(context_raw, np.float32)).numpy()
    queries = cameras_lib.transform_cameras(np.asarray(query_raw, np.float32)).numpy()
    frames = np.broadcast_to(context_frames[None], (samples, *context_frames.shape))
    views = np.broadcast_to(context_views[None], (samples, *context_views.shape))
    pair = tf.constant([seed, 0], tf.int32)
    images = np.stack([
        model.generate(frames, views, np.broadcast_to(query, (samples, len(query))),
                       seed=pair).numpy()
        for query in queries])  # [N, K, H, W, 3]
    return summarize(images)


def summarize(images):
    """K samples per query camera [N, K, H, W, 3] → {"samples": them, "mean": [N, H, W, 3],
    "std": [N, H, W]} (std over samples, averaged over colour channels)."""
    images = np.asarray(images)
    return {"samples": images, "mean": images.mean(axis=1),
            "std": images.std(axis=1).mean(axis=-1)}


def _tile_rows(rendered, index, scale):
    """One animation frame: mean | samples | std heat map of query `index`, upscaled."""
    std = figures.heat_map(rendered["std"][index])
    tiles = [rendered["mean"][index], *rendered["samples"][index], std]
    labels = ["mean"] + [f"sample {k + 1}" for k in range(len(rendered["samples"][index]))] + [
        "std"]
    return figures.labelled_grid([tiles], column_labels=labels, scale=scale)


def save_gif(path, rendered, scale=4, duration_ms=100):
    """An animated GIF, a frame per query camera: mean | K samples | std heat map. `path` is a
    file name or a binary file object."""
    frames = [Image.fromarray(_tile_rows(rendered, i, scale))
              for i in range(len(rendered["mean"]))]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration_ms, loop=0, optimize=False)
    return path


def save_strip(path, context_frames, rendered, columns=8, scale=2):
    """A labelled PNG: the context views on top, then `columns` evenly spaced queries of the
    path with a row each for the mean, every sample and the std heat map."""
    n = len(rendered["mean"])
    chosen = np.unique(np.linspace(0, n - 1, min(columns, n)).round().astype(int))
    k = rendered["samples"].shape[1]
    rows = [[rendered["mean"][i] for i in chosen]]
    rows += [[rendered["samples"][i, s] for i in chosen] for s in range(k)]
    rows += [[figures.heat_map(rendered["std"][i]) for i in chosen]]
    labels = ["mean"] + [f"sample {s + 1}" for s in range(k)] + ["std"]
    parts = []
    if len(context_frames):
        parts.append(figures.labelled_grid(
            [list(np.asarray(context_frames))], row_labels=["context"],
            column_labels=[f"view {m + 1}" for m in range(len(context_frames))], scale=scale))
    parts.append(figures.labelled_grid(
        rows, row_labels=labels, column_labels=[f"query {i + 1}/{n}" for i in chosen],
        scale=scale))
    Image.fromarray(figures.stack_vertically(parts)).save(path, format="PNG")
    return path
