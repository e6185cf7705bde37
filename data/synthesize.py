"""Writes a synthetic Shepard-Metzler dataset in the original `gqn-datasets` format.

    python data/synthesize.py --dataset shepard_metzler_7_parts --out /tmp/gqn \
        --train_scenes 2000 --test_scenes 200

writes `/tmp/gqn/shepard_metzler_7_parts/{train,test}/<i>-of-<n>.tfrecord`, which every reader of
the real data (and `--data_dir /tmp/gqn`) accepts. Scenes and camera convention: see
`gqn_tf/data/synthetic.py`.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402

from gqn_tf.data import synthetic  # noqa: E402

_DATASET = flags.DEFINE_string(
    "dataset", "shepard_metzler_7_parts",
    f"Dataset to synthesize: one of {', '.join(sorted(synthetic.NUM_PARTS))}.")
_OUT = flags.DEFINE_string(
    "out", None, "Root directory; shards go to <out>/<dataset>/<split>/.", required=True)
_TRAIN_SCENES = flags.DEFINE_integer("train_scenes", 2000, "Number of training scenes (0: none).")
_TEST_SCENES = flags.DEFINE_integer("test_scenes", 200, "Number of test scenes (0: none).")
_SCENES_PER_SHARD = flags.DEFINE_integer(
    "scenes_per_shard", 100, "Scenes per shard; the last shard of a split may hold fewer.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Non-negative seed; the output depends only on it, not on --workers.")
_WORKERS = flags.DEFINE_integer(
    "workers", os.cpu_count() or 1, "Rendering processes (1: render in this process).")


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        synthetic.num_parts(_DATASET.value)
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    synthetic.synthesize(
        out=_OUT.value,
        dataset=_DATASET.value,
        train_scenes=_TRAIN_SCENES.value,
        test_scenes=_TEST_SCENES.value,
        scenes_per_shard=_SCENES_PER_SHARD.value,
        seed=_SEED.value,
        workers=_WORKERS.value,
    )


if __name__ == "__main__":
    cli.run(main)
