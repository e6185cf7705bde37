"""Finds the shard files of one split of a dataset in the original layout (docs/design.md §1).

The real data hold `<root>/<dataset>/<split>/<i>-of-<n>.tfrecord` with `n` from the dataset table.
The bundled sample and the synthetic generator write the same naming with a smaller `n`
(`1-of-4.tfrecord`), and a download may be partial, so any one consistent `n` is accepted with a
warning when it or the set of present shards differs from the table.

Files are listed through `tf.io.gfile` (local paths and gs:// alike) where TensorFlow is
installed, and through `os` where it is not (the JAX trainer on a machine without it).
"""

import os
import types

from absl import logging

from gqn_tf.data import datasets, records


class DataNotFoundError(FileNotFoundError):
    """No shard of the requested dataset and split is where the reader looked."""


class ShardNamingError(ValueError):
    """The shard files in one directory disagree on their total count `n` in `<i>-of-<n>`."""


def _how_to_get_data(dataset, root):
    return (
        f"Download it with `python data/download.py --dataset {dataset} --data_dir {root}` "
        f"(copies from {datasets.BUCKET}/{dataset} with gsutil), or use the bundled sample with "
        f"`--data_dir data/sample`."
    )


# The three `tf.io.gfile` calls used here, on local paths, for when TensorFlow is absent.
_LOCAL_FILES = types.SimpleNamespace(listdir=os.listdir, isdir=os.path.isdir,
                                     exists=os.path.exists)


def _gfile():
    try:
        import tensorflow as tf
    except ImportError:
        return _LOCAL_FILES
    return tf.io.gfile


def list_shards(root, dataset, split):
    """Returns the sorted paths of the shards of `dataset`/`split` under `root`.

    Raises DataNotFoundError (a FileNotFoundError) when there is none, saying where it looked,
    which names it expects and how to get the data; ShardNamingError when the files mix
    different totals `n`. Logs a warning when fewer shards are present than expected.
    """
    info = datasets.get_dataset_info(dataset)
    expected = info.num_shards(split)
    directory = records.split_dir(root, dataset, split)
    example = records.shard_name(1, expected)
    gfile = _gfile()
    names = gfile.listdir(directory) if gfile.isdir(directory) else []
    shards = {}  # num_shards -> {index: name}
    for name in names:
        parsed = records.parse_shard_name(name.rstrip("/"))
        if parsed is not None:
            index, total = parsed
            shards.setdefault(total, {})[index] = name
    if not shards:
        file_in_the_way = next((path for path in (os.path.expanduser(str(root)), directory)
                                if gfile.exists(path) and not gfile.isdir(path)),
                               None)
        if file_in_the_way is not None:
            what = f"{file_in_the_way} is a file, not a directory"
        elif gfile.isdir(directory):
            what = f"{len(names)} other files" if names else "no files"
        else:
            what = "the directory does not exist"
        raise DataNotFoundError(
            f"No {dataset} {split} shards in {directory} ({what}); expected files named like "
            f"{example} ... {records.shard_name(expected, expected)}. "
            f"{_how_to_get_data(dataset, root)}"
        )
    if len(shards) > 1:
        counts = ", ".join(
            f"{len(found)} of {total} (e.g. {next(iter(found.values()))})"
            for total, found in sorted(shards.items())
        )
        raise ShardNamingError(
            f"The shards in {directory} mix different totals: {counts}. "
            f"Keep the files of one download or generator run only."
        )
    (total, found), = shards.items()
    if total != expected:
        logging.warning(
            "%s: %d shard files named '-of-%d' where the %s %s split has %d; "
            "reading them (a sample or synthetic copy?).",
            directory, len(found), total, dataset, split, expected,
        )
    elif len(found) < total:
        logging.warning(
            "%s: %d of %d shards present (partial download?); reading those. %s",
            directory, len(found), expected, _how_to_get_data(dataset, root),
        )
    if total != expected and len(found) < total:
        logging.warning("%s: only %d of the %d shards named '-of-%d' are present.",
                        directory, len(found), total, total)
    return [os.path.join(directory, found[index]) for index in sorted(found)]
