"""Renders novel views of one scene along a camera path: an animated GIF and a labelled PNG.

    python render.py --model pretrained/gqn_sm7_32.npz --data_dir data/sample --scene 0 \
        --out orbit.gif

From --context_size views of scene --scene of --split, the model renders every camera of an
orbit around the object (Shepard-Metzler) or a pan in place (rooms, mazes, jaco): --samples
prior samples per camera (Algorithm S3), their mean and their per-pixel std (the model's
uncertainty). Writes the GIF to --out and the PNG strip beside it (same name, .png).
"""

import math
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402
from gqn_tf.data import datasets  # noqa: E402

# --- What to render -----------------------------------------------------------------------
_MODEL = flags.DEFINE_string(
    "model", None, "The model: a train.py run directory (its latest checkpoint), a checkpoint "
    "prefix (<run>/checkpoints/ckpt-N), a .keras file or a pretrained .npz file.",
    required=True)
_DATASET = flags.DEFINE_enum(
    "dataset", "shepard_metzler_7_parts", sorted(datasets.DATASETS), "Dataset of the scene.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root of the data: reads <data_dir>/<dataset>/<split>/ (data/sample for the bundled "
    "sample).")
_SPLIT = flags.DEFINE_enum("split", "test", list(datasets.SPLITS), "Split of the scene.")
_SCENE = flags.DEFINE_integer(
    "scene", 0, "Scene index in file order, counting from 0.", lower_bound=0)
_CONTEXT_SIZE = flags.DEFINE_integer(
    "context_size", 3, "Context views the model sees (drawn at random by --seed from the "
    "scene's views; 0: the prior alone).", lower_bound=0)
_FRAME_SIZE = flags.DEFINE_integer(
    "frame_size", None, "Resize the frames to NxN. Default: the model's image size.",
    lower_bound=1)

# --- The path -----------------------------------------------------------------------------
_PATH = flags.DEFINE_enum(
    "path", None, ["orbit", "pan"], "orbit: a circle around the scene's centre at its cameras' "
    "distance, looking at the centre; pan: a turn in place at the first view's position. "
    "Default: orbit for Shepard-Metzler, pan for the others.")
_NUM_FRAMES = flags.DEFINE_integer(
    "num_frames", 36, "Query cameras along the path (frames of the GIF).", lower_bound=1)
_PITCH = flags.DEFINE_float(
    "pitch", None, "Pitch of the path's cameras in degrees (positive looks down on the "
    "object from above for an orbit). Default: the scene's mean pitch (orbit) or the first "
    "view's (pan).")

# --- Output -------------------------------------------------------------------------------
_SAMPLES = flags.DEFINE_integer(
    "samples", 4, "Prior samples per camera; their per-pixel std is the uncertainty map.",
    lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the context views and the latent samples.")
_OUT = flags.DEFINE_string(
    "out", "orbit.gif", "The GIF to write; the labelled PNG strip goes beside it (.png).")
_COLUMNS = flags.DEFINE_integer(
    "strip_columns", 8, "Queries shown in the PNG strip, evenly spaced along the path.",
    lower_bound=1)
_SCALE = flags.DEFINE_integer("scale", 4, "Enlargement of the GIF's images.", lower_bound=1)


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not _OUT.value.lower().endswith(".gif"):
        raise cli.UserError(f"--out {_OUT.value!r}: give a .gif file name.")
    cli.import_tensorflow()
    import numpy as np

    from gqn_tf.data import shards
    from gqn_tf.evaluation import render
    from gqn_tf.training import checkpoints

    info = datasets.get_dataset_info(_DATASET.value)
    if _CONTEXT_SIZE.value >= info.sequence_size:
        raise cli.UserError(f"--context_size {_CONTEXT_SIZE.value} must be smaller than the "
                            f"{info.sequence_size} views per scene of {info.name}.")
    try:
        model, source = checkpoints.load_model(os.path.expanduser(_MODEL.value))
        filenames = shards.list_shards(os.path.expanduser(_DATA_DIR.value), _DATASET.value,
                                       _SPLIT.value)
        image_size = model.gqn_config.image_size
        if _FRAME_SIZE.value is not None and _FRAME_SIZE.value != image_size:
            raise cli.UserError(f"--frame_size {_FRAME_SIZE.value} differs from the model's "
                                f"image size {image_size}; pass --frame_size {image_size} or "
                                f"leave it unset.")
        frames, raw = render.load_scene(filenames, info, _SCENE.value, image_size)
    except (FileNotFoundError, IndexError, shards.ShardNamingError) as error:
        raise cli.DataError(str(error)) from None

    views = np.random.default_rng(_SEED.value).permutation(info.sequence_size)
    context = views[:_CONTEXT_SIZE.value]
    pitch = None if _PITCH.value is None else math.radians(_PITCH.value)
    kind = _PATH.value or render.default_path(_DATASET.value)
    query = render.make_path(kind, raw, _NUM_FRAMES.value, pitch)
    rendered = render.render_path(model, frames[context], raw[context], query,
                                  samples=_SAMPLES.value, seed=_SEED.value)
    out = os.path.expanduser(_OUT.value)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    strip = os.path.splitext(out)[0] + ".png"
    render.save_gif(out, rendered, scale=_SCALE.value)
    render.save_strip(strip, frames[context], rendered, columns=_COLUMNS.value)
    print(f"Rendered scene {_SCENE.value} of {_DATASET.value}/{_SPLIT.value} from "
          f"{len(context)} context views along a {len(query)}-camera {kind} with {source['source']}"
          f": {out} and {strip}; mean pixel std over {_SAMPLES.value} samples "
          f"{float(rendered['std'].mean()):.4f}.")


if __name__ == "__main__":
    cli.run(main)
