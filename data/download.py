"""Copies DeepMind's GQN datasets from the public bucket (gs://gqn-dataset) with gsutil.

    python data/download.py --dataset shepard_metzler_7_parts                # everything
    python data/download.py --dataset rooms_ring_camera --num_shards 10      # first 10 per split
    python data/download.py --dataset jaco --splits test --dry_run           # print, copy nothing

Shards go to `<data_dir>/<dataset>/<split>/`; shards already there are skipped, so re-running
resumes an interrupted copy. Needs `gsutil` (Google Cloud SDK); no credentials.
"""

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

from absl import flags  # noqa: E402

from gqn_tf import cli  # noqa: E402

from gqn_tf.data import datasets  # noqa: E402
from gqn_tf.data import download as download_lib  # noqa: E402

_DATASET = flags.DEFINE_enum(
    "dataset", None, sorted(datasets.DATASETS), "Dataset to copy.", required=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", datasets.DEFAULT_DATA_DIR,
    "Root directory of the local copy (default: $GQN_DATA_DIR or ~/gqn-datasets).")
_SPLITS = flags.DEFINE_list("splits", list(datasets.SPLITS), "Splits to copy: train, test.")
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", None, "Copy only the first N shards of each split (default: all).", lower_bound=1)
_DRY_RUN = flags.DEFINE_boolean(
    "dry_run", False, "Print the gsutil commands that would run, copy nothing.")


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        splits = [datasets.check_split(split) for split in _SPLITS.value]
        commands = download_lib.download(
            _DATASET.value, os.path.expanduser(_DATA_DIR.value), splits, _NUM_SHARDS.value,
            dry_run=_DRY_RUN.value)
    except (ValueError, download_lib.GsutilNotFoundError) as error:
        raise cli.UserError(str(error)) from None
    if _DRY_RUN.value:
        print("\n".join(command.shell() for command in commands) or "# Nothing to copy.")


if __name__ == "__main__":
    cli.run(main)
