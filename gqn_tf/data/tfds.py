"""The TFDS bridge: the original records seen as a TFDS dataset, and the pipeline on top of it.

`python -m gqn_tf.data.tfds_register` (gqn_tf/data/tfds_register.py) writes TFDS metadata beside
links to the original shards, so `tfds.load(name, data_dir=tfds_dir)` reads them unchanged. The
original `tf.train.Example`s (docs/design.md §1) are exactly what `features()` serializes to: a Sequence
of S JPEG Images is a bytes list of length S and a Tensor of shape [S * 5] a float list.

`make_tfds_dataset` reads a (possibly sliced) split of a registered dataset through the same
`pipeline.read_records` and `pipeline.scenes_from_records` as `pipeline.make_dataset`, so the same
seed, batch size and shards give the same tensors as the raw directory.
"""

import os
import random

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gqn_tf.data import cameras as cameras_lib
from gqn_tf.data import datasets, pipeline

DEFAULT_VERSION = datasets.TFDS_VERSION


class NotRegisteredError(FileNotFoundError):
    """The dataset has no TFDS metadata under the given TFDS directory."""


def features(info):
    """The TFDS features of one scene of `info` (a DatasetInfo or name): `frames` [S, F, F, 3]
    uint8 from S JPEGs, `cameras` [S * 5] float32 raw cameras (x, y, z, yaw, pitch per frame)."""
    if isinstance(info, str):
        info = datasets.get_dataset_info(info)
    size, num_views = info.frame_size, info.sequence_size
    return tfds.features.FeaturesDict({
        "frames": tfds.features.Sequence(
            tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"), length=num_views),
        "cameras": tfds.features.Tensor(
            shape=(num_views * cameras_lib.RAW_CAMERA_DIM,), dtype=np.float32),
    })


def load_builder(name, tfds_dir, version=None):
    """The read-only TFDS builder of registered dataset `name` under `tfds_dir` (newest version
    unless `version` is given); NotRegisteredError saying how to register it otherwise."""
    info = datasets.get_dataset_info(name)
    tfds_dir = os.path.expanduser(str(tfds_dir))
    spec = f"{name}:{version}" if version else name
    try:
        builder = tfds.builder(spec, data_dir=tfds_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise NotRegisteredError(
            f"No TFDS metadata for {spec} under {tfds_dir}. Register the original files with "
            f"`python -m gqn_tf.data.tfds_register --dataset {name} --data_dir <root of "
            f"{name}/train,test> --tfds_dir {tfds_dir}`.") from error
    if tuple(builder.info.features["frames"].shape[:1]) != (info.sequence_size,):
        raise ValueError(
            f"The TFDS dataset {spec} under {tfds_dir} does not hold {name} scenes of "
            f"{info.sequence_size} views: its features are {builder.info.features}.")
    return builder


def _shard_ranges(instructions):
    """(files, ranges): the local shard files to read and, when the split is sliced within a
    shard, {file: (skip, take)}; None when every file is read whole."""
    files, ranges, whole = [], {}, True
    for instruction in instructions:
        if instruction.take <= 0:
            continue
        filename = os.fspath(instruction.filename)
        # Error messages of read_records then name the original shard, not its TFDS link.
        filename = os.path.realpath(filename) if os.path.exists(filename) else filename
        files.append(filename)
        ranges[filename] = (instruction.skip, instruction.take)
        whole &= instruction.skip == 0 and instruction.take >= instruction.examples_in_shard
    return files, None if whole else ranges


def _keep_in_ranges(records_ds, ranges):
    """Keeps the records of `read_records` whose index in their shard lies in its (skip, take)."""
    keys = tf.constant(list(ranges), tf.string)
    lookup = {}
    for position, name in enumerate(("skip", "take")):
        values = tf.constant([r[position] for r in ranges.values()], tf.int64)
        lookup[name] = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

    def keep(record):
        skip = lookup["skip"].lookup(record["shard"])
        take = lookup["take"].lookup(record["shard"])
        return (record["index"] >= skip) & (record["index"] < skip + take)

    return records_ds.filter(keep)


def split_files(name, tfds_dir, split="train", *, version=None):
    """The original shard files that `split` of a registered dataset reads, in order."""
    builder = load_builder(name, tfds_dir, version)
    return _shard_ranges(builder.info.splits[split].file_instructions)[0]


def read_split(name, tfds_dir, split="train", *, version=None, shuffle=True, seed=None,
               repeat=False, cycle_length=None, shuffle_buffer_size=1000,
               skip_bad_records=False, bad_record_counter=None):
    """The serialized records of `split` of a registered dataset, as `pipeline.read_records`
    dicts. `split` takes TFDS slicing ("test[:50%]", "train[10:20]"); shards wholly in the
    slice are read as by `read_records`, partly covered ones whole and filtered to the slice."""
    builder = load_builder(name, tfds_dir, version)
    files, ranges = _shard_ranges(builder.info.splits[split].file_instructions)
    if not files:
        raise ValueError(f"The split {split!r} of {name} under {tfds_dir} holds no records.")
    records_ds = pipeline.read_records(
        files, shuffle=shuffle, seed=seed, repeat=repeat, cycle_length=cycle_length,
        shuffle_buffer_size=shuffle_buffer_size, skip_bad_records=skip_bad_records,
        bad_record_counter=bad_record_counter)
    return records_ds if ranges is None else _keep_in_ranges(records_ds, ranges)


def make_tfds_dataset(name, tfds_dir, split="train", batch_size=36, context_size=None,
                      seed=None, frame_size=None, shuffle=True, repeat=True,
                      skip_bad_records=False, bad_record_counter=None, max_context_size=None,
                      drop_remainder=True, shuffle_buffer_size=1000, cycle_length=None,
                      version=None, rows=None):
    """`pipeline.make_dataset` with a registered TFDS dataset as the source of records.

    Same arguments and output (docs/design.md §4), `rows` included, plus TFDS split slicing
    ("test[:50%]") and the `version` of the registration. Unsliced, the records stream equals
    `make_dataset`'s (same shards in the same order, same seeded shuffles), so the same seed
    gives the same tensors.
    """
    info = datasets.get_dataset_info(name)
    pipeline.check_context_size(info, context_size, max_context_size)
    if seed is None:
        seed = random.getrandbits(62)
    if skip_bad_records and bad_record_counter is None:
        bad_record_counter = pipeline.BadRecordCounter()
    records_ds = read_split(
        name, tfds_dir, split, version=version, shuffle=shuffle, seed=seed, repeat=repeat,
        cycle_length=cycle_length, shuffle_buffer_size=shuffle_buffer_size,
        skip_bad_records=skip_bad_records, bad_record_counter=bad_record_counter)
    dataset = pipeline.scenes_from_records(
        records_ds, info, batch_size=batch_size, context_size=context_size,
        max_context_size=max_context_size, seed=seed, frame_size=frame_size,
        drop_remainder=drop_remainder, skip_bad_records=skip_bad_records,
        bad_record_counter=bad_record_counter, rows=rows)
    return dataset if rows is not None else dataset.prefetch(pipeline.AUTOTUNE)
