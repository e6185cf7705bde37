"""Synthetic Shepard-Metzler scenes written in the original `gqn-datasets` format (docs/design.md §1).

Lets the whole pipeline run without the real data (a bundled sample, tests, smoke runs): the
shards are written with `records.serialize_scene` under `<out>/<dataset>/<split>/` and named by
`records.shard_name`, so a reader cannot tell them from DeepMind's files.

A scene is an object of `P` unit cubes (7 or 5) placed by a self-avoiding random walk on the
integer grid, each cube with its own random colour, seen by S = 15 cameras. Frames are 64x64 RGB
JPEGs rendered with flat Lambertian shading (ambient + a key and a fill directional light fixed
in the world, chosen so that any two adjacent faces of a cube differ in brightness).

Camera convention (ours; the real data do not document theirs):
- World frame: right-handed, **z is up**. The object's bounding box is centred at the origin.
- `yaw` is the azimuth of the camera's *look direction*, measured in the horizontal x-y plane
  from +x towards +y (counter-clockwise seen from above), in [-pi, pi).
- `pitch` is the elevation of the look direction above the horizontal plane (positive: looking
  up), drawn in `PITCH_RANGE`.
- `look_direction(yaw, pitch) = (cos(pitch) cos(yaw), cos(pitch) sin(yaw), sin(pitch))`.
- Every camera looks at the object's centre from `CAMERA_DISTANCE`:
  `position = centre - CAMERA_DISTANCE * look_direction(yaw, pitch)`, centre = origin. So a
  camera with positive pitch sits below the object, and yaw = 0 looks along +x from -x.
- Images have no roll: the image's up is the world's +z projected onto the image plane. Pinhole
  projection with a vertical and horizontal field of view of `FIELD_OF_VIEW` (36 degrees): from
  any direction it frames every object whose corners lie within 3.09 of the centre (over 99% of
  7-cube objects; a rare long bar may touch the frame's edge in some views).
Each record stores per frame the raw `x, y, z, yaw, pitch` (float32), as the real data do.

The other five datasets (jaco, mazes, the rooms) get format-correct stand-ins: objects of
`STAND_IN_PARTS` cubes seen by that dataset's S cameras at its frame size (84x84 and S = 300 for
mazes, 128x128 for rooms_free_camera_with_object_rotations), in shards named as theirs. They
look nothing like rooms or mazes, but every reader, shape check and model size meets them as it
would the real files, so all seven datasets can be tested without downloading any.

Scenes are independent and seeded by `(seed, split, scene index)`, so the output depends on
`seed` alone, not on the number of worker processes.
"""

import colorsys
import contextlib
import io
import math
import multiprocessing
import os

import numpy as np
from absl import logging
from PIL import Image, ImageDraw
from tqdm import tqdm

from gqn_tf import files
from gqn_tf.data import datasets, records

STAND_IN_PARTS = 5
NUM_PARTS = {name: STAND_IN_PARTS for name in datasets.DATASETS}
NUM_PARTS.update({"shepard_metzler_5_parts": 5, "shepard_metzler_7_parts": 7})
CAMERA_DISTANCE = 10.0
FIELD_OF_VIEW = math.radians(36.0)
PITCH_RANGE = (-math.pi / 3, math.pi / 3)
BACKGROUND = (0, 0, 0)
JPEG_QUALITY = 90
SUPERSAMPLE = 2  # render at 2x, box-downsample: cheap antialiasing of the cube edges

_SPLIT_IDS = {"train": 0, "test": 1}
_STEPS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
# Face f of a unit cube has outward normal _STEPS[f]; its 4 corners (offsets from the cube's
# centre) go around the face.
_FACE_CORNERS = np.array([
    [[.5, -.5, -.5], [.5, .5, -.5], [.5, .5, .5], [.5, -.5, .5]],
    [[-.5, -.5, -.5], [-.5, -.5, .5], [-.5, .5, .5], [-.5, .5, -.5]],
    [[-.5, .5, -.5], [-.5, .5, .5], [.5, .5, .5], [.5, .5, -.5]],
    [[-.5, -.5, -.5], [.5, -.5, -.5], [.5, -.5, .5], [-.5, -.5, .5]],
    [[-.5, -.5, .5], [.5, -.5, .5], [.5, .5, .5], [-.5, .5, .5]],
    [[-.5, -.5, -.5], [-.5, .5, -.5], [.5, .5, -.5], [.5, -.5, -.5]],
])
_AMBIENT = 0.3
# (direction towards the light, strength): picked so that adjacent faces differ by >= 0.12.
_LIGHTS = ((np.array([0.4, 0.2, 0.7]), 0.6), (np.array([-0.6, -0.3, 0.1]), 0.3))


def _face_shades():
    """Brightness of each of the 6 face orientations under the fixed lights: [6]."""
    shade = np.full(6, _AMBIENT)
    for direction, strength in _LIGHTS:
        shade += strength * np.clip(_STEPS @ (direction / np.linalg.norm(direction)), 0, None)
    return shade


_SHADES = _face_shades()


def num_parts(dataset):
    """The number of cubes of a synthesizable dataset; a ValueError for any other name."""
    if dataset not in NUM_PARTS:
        raise ValueError(
            f"Cannot synthesize dataset {dataset!r}: only {', '.join(sorted(NUM_PARTS))} "
            "can be generated."
        )
    return NUM_PARTS[dataset]


def look_direction(yaw, pitch):
    """Unit look direction [..., 3] of cameras with `yaw` and `pitch` (module docstring)."""
    yaw, pitch = np.asarray(yaw, np.float64), np.asarray(pitch, np.float64)
    return np.stack(
        [np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=-1
    )


def random_walk(rng, parts):
    """Grid cells [parts, 3] (int) of a self-avoiding random walk: each cube touches the last."""
    while True:
        cells = [np.zeros(3, np.int64)]
        occupied = {(0, 0, 0)}
        while len(cells) < parts:
            free = [c for c in cells[-1] + _STEPS if tuple(c) not in occupied]
            if not free:  # trapped (cannot happen this short in 3D, but stay correct)
                break
            cells.append(free[rng.integers(len(free))])
            occupied.add(tuple(cells[-1]))
        else:
            return np.stack(cells)


def random_colours(rng, count):
    """`count` saturated, bright random RGB colours in [0, 1]: [count, 3]."""
    hsv = np.stack(
        [rng.uniform(0, 1, count), rng.uniform(0.5, 1, count), rng.uniform(0.75, 1, count)], -1
    )
    return np.array([colorsys.hsv_to_rgb(*c) for c in hsv])


def random_cameras(rng, count):
    """`count` raw cameras [count, 5] (x, y, z, yaw, pitch), float32, looking at the origin."""
    yaw = rng.uniform(-math.pi, math.pi, count)
    pitch = rng.uniform(*PITCH_RANGE, count)
    position = -CAMERA_DISTANCE * look_direction(yaw, pitch)
    return np.concatenate([position, yaw[:, None], pitch[:, None]], -1).astype(np.float32)


def sample_scene(rng, parts, sequence_size):
    """One scene: cube centres [P, 3] (bounding box centred at 0), colours [P, 3], cameras [S, 5]."""
    cells = random_walk(rng, parts)
    centres = cells - (cells.min(0) + cells.max(0)) / 2
    return centres, random_colours(rng, parts), random_cameras(rng, sequence_size)


def render_views(centres, colours, cameras, frame_size=64):
    """Renders unit cubes at `centres` with `colours` from raw `cameras` [S, 5]: uint8 [S, H, W, 3].

    Projects every face corner for all views at once, drops faces that are hidden against a
    neighbouring cube or face away from the camera, and paints each view's cubes back to front
    (painter's algorithm). Sorting cubes by centre distance is exact on a grid: cube A can hide
    cube B only if the eye is on A's side of every plane separating them, which makes A strictly
    nearer on each separating axis and equally near on the others.
    """
    centres = np.asarray(centres, np.float64)
    cameras = np.asarray(cameras, np.float64)
    size = frame_size * SUPERSAMPLE
    position = cameras[:, :3]  # [S, 3]
    forward = look_direction(cameras[:, 3], cameras[:, 4])  # [S, 3]
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, forward)
    basis = np.stack([right, up, forward], axis=1)  # [S, 3, 3]

    corners = centres[:, None, None, :] + _FACE_CORNERS  # [P, 6, 4, 3]
    relative = corners[None] - position[:, None, None, None, :]  # [S, P, 6, 4, 3]
    camera_xyz = np.einsum("spfcj,sij->spfci", relative, basis)
    focal = (size / 2) / math.tan(FIELD_OF_VIEW / 2)
    screen = np.empty(camera_xyz.shape[:-1] + (2,))  # [S, P, 6, 4, 2]
    screen[..., 0] = size / 2 + focal * camera_xyz[..., 0] / camera_xyz[..., 2]
    screen[..., 1] = size / 2 - focal * camera_xyz[..., 1] / camera_xyz[..., 2]
    screen = screen.reshape(screen.shape[:3] + (8,)).tolist()

    occupied = {tuple(np.round(c * 2).astype(int)) for c in centres}
    hidden = np.array([[tuple(np.round(c * 2).astype(int) + 2 * step) in occupied
                        for step in _STEPS] for c in centres])  # [P, 6]
    face_centres = centres[:, None, :] + 0.5 * _STEPS  # [P, 6, 3]
    to_camera = position[:, None, None, :] - face_centres[None]  # [S, P, 6, 3]
    visible = (np.einsum("spfi,fi->spf", to_camera, _STEPS) > 0) & ~hidden[None]
    order = np.argsort(-np.linalg.norm(position[:, None] - centres[None], axis=-1), axis=1)
    fills = [[tuple(int(v) for v in np.round(255 * shade * colour)) for shade in _SHADES]
             for colour in colours]

    frames = np.empty((len(cameras), frame_size, frame_size, 3), np.uint8)
    for view in range(len(cameras)):
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for part in order[view]:
            for face in np.flatnonzero(visible[view, part]):
                draw.polygon(screen[view][part][face], fill=fills[part][face])
        frames[view] = np.asarray(image.reduce(SUPERSAMPLE))
    return frames


def encode_jpeg(frame):
    """JPEG bytes of one uint8 [H, W, 3] frame (PIL, fixed settings, so output is reproducible).

    Optimised Huffman tables cut a 64x64 frame by a quarter (most of its bytes are tables).
    """
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def scene_rng(seed, split, index):
    """The random generator of one scene, independent of all others and of the worker count."""
    return np.random.default_rng([seed, _SPLIT_IDS[datasets.check_split(split)], index])


def render_scene(dataset, seed, split, index):
    """Scene `index` of `split`: (S JPEG byte strings, raw cameras [S, 5] float32)."""
    info = datasets.get_dataset_info(dataset)
    centres, colours, cameras = sample_scene(
        scene_rng(seed, split, index), num_parts(dataset), info.sequence_size
    )
    frames = render_views(centres, colours, cameras, info.frame_size)
    return [encode_jpeg(frame) for frame in frames], cameras


def _render_task(args):
    return render_scene(*args)


def rendered_scenes(dataset, seed, split, num_scenes, pool=None):
    """Yields the rendered scenes of a split in index order, (S JPEG byte strings, raw cameras
    [S, 5]) each, in parallel when `pool` is given."""
    tasks = ((dataset, seed, split, index) for index in range(num_scenes))
    if pool is None:
        return map(_render_task, tasks)
    return pool.imap(_render_task, tasks, chunksize=8)


def _check_no_other_shards(directory, num_shards):
    """Refuses to mix our shards with shards of a different count left by an earlier run."""
    for name in sorted(os.listdir(directory)):
        parsed = records.parse_shard_name(name)
        if parsed is not None and parsed[1] != num_shards:
            raise ValueError(
                f"{directory} already holds {name}, a shard of a set of {parsed[1]}, but this "
                f"run writes {num_shards} shards; remove the old shards or choose another --out."
            )


def write_split(out, dataset, split, num_scenes, scenes_per_shard=100, seed=0, pool=None):
    """Writes `num_scenes` scenes of `split` as ceil(num_scenes / scenes_per_shard) shards.

    Each shard is written under a temporary name and renamed when complete, so an interrupted
    run never leaves a truncated file that a reader would take for a shard. Returns the paths.
    """
    from gqn_tf import cli

    tf = cli.import_tensorflow()  # only the writing process needs it; without start-up lines

    num_parts(dataset)
    if num_scenes <= 0:
        return []
    if scenes_per_shard <= 0:
        raise ValueError(f"scenes_per_shard must be positive, got {scenes_per_shard}.")
    num_shards = -(-num_scenes // scenes_per_shard)
    directory = records.split_dir(out, dataset, split)
    os.makedirs(directory, exist_ok=True)
    _check_no_other_shards(directory, num_shards)

    scenes = rendered_scenes(dataset, seed, split, num_scenes, pool)
    paths = []
    with tqdm(total=num_scenes, desc=f"{dataset}/{split}", unit="scene") as progress:
        for shard in range(num_shards):
            path = os.path.join(directory, records.shard_name(shard + 1, num_shards))
            count = min(scenes_per_shard, num_scenes - shard * scenes_per_shard)

            def write(temporary, count=count):
                with tf.io.TFRecordWriter(temporary) as writer:
                    for _ in range(count):
                        writer.write(records.serialize_scene(*next(scenes)))
                        progress.update()

            paths.append(files.write_atomically(path, write))
    logging.info("Wrote %d scenes in %d shards to %s.", num_scenes, num_shards, directory)
    return paths


def _pool_context():
    # fork starts workers in milliseconds; a spawned worker would re-import TensorFlow (seconds).
    # The workers use only numpy and PIL, never TensorFlow, so forking a process that has
    # TensorFlow loaded is safe here.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


@contextlib.contextmanager
def pool(workers):
    """A pool of `workers` rendering processes (None for one: render in this process)."""
    processes = _pool_context().Pool(workers) if workers > 1 else None
    try:
        yield processes
    finally:  # every task is consumed by then, or an error stops them all
        if processes is not None:
            processes.terminate()
            processes.join()


def synthesize(out, dataset, train_scenes, test_scenes, scenes_per_shard=100, seed=0, workers=1):
    """Writes a synthetic Shepard-Metzler dataset: `<out>/<dataset>/{train,test}/*.tfrecord`.

    Returns {split: [shard paths]}. The bytes written depend only on the arguments other than
    `workers`.
    """
    num_parts(dataset)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    counts = {"train": train_scenes, "test": test_scenes}
    with pool(workers) as processes:
        return {split: write_split(out, dataset, split, count, scenes_per_shard, seed,
                                   processes)
                for split, count in counts.items()}
