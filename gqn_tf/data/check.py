"""Finds damaged records in shard files by decoding every frame, and names them.

The input pipeline checks each record's layout and its JPEG markers before decoding, but a
JPEG whose header and markers are intact and whose body is damaged fails only inside
`decode_jpeg`, with a message that names no file. `find_bad_record` reads the shards in file
order, decodes all S frames of every record and returns the first record that fails, with its
shard, its record index and its frame index (both counting from 0) and the decoder's reason.
The training and evaluation loops call it when a batch fails to decode, and
`python -m gqn_tf.data.check` runs it over a whole split (to check a download). TensorFlow is
imported by the functions that use it, so that the command's `--help` and flag errors are instant.
"""

import contextlib
import dataclasses
import os
import re
import sys
from typing import Optional

from gqn_tf import cli
from gqn_tf.data import datasets, records

ADVICE = ("Re-download that shard (python data/download.py), or pass --skip_bad_records to skip "
          "bad records and go on.")


# The messages of the pipeline's own checks, inside a TensorFlow error's text.
_PIPELINE_MESSAGE = re.compile(
    r"((?:record \d+ of |shard \S+ is truncated|Frames are not )[^\n]*?)(?:\]|\n|$)")


class BadDataError(cli.DataError):
    """The input pipeline met a bad record; the message names it and says what to do."""


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """One damaged record: `record` and `frame` count from 0 (frame None: the whole record)."""

    shard: str
    record: int
    frame: Optional[int]
    reason: str

    def message(self):
        where = f"record {self.record} of shard {self.shard}"
        what = f"frame {self.frame} {self.reason}" if self.frame is not None else self.reason
        return f"{where}: {what}{records.COUNTING_NOTE}"


def _first_line(error):
    """The first line of a TensorFlow error without its node and op decorations."""
    text = getattr(error, "message", str(error)).strip().splitlines()
    line = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", text[0] if text else "")
    return line.strip() or type(error).__name__


def _frames(serialized, num_views):
    """The S JPEG strings of one serialized scene."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, records.feature_spec(num_views))["frames"]


def _decode_all(serialized, num_views):
    import tensorflow as tf

    frames = _frames(serialized, num_views)
    return tf.stack([tf.shape(tf.io.decode_jpeg(frames[i], channels=3))
                     for i in range(num_views)])


def _locate_frame(serialized, num_views, shard, index):
    """The first frame of one failing record that does not decode, as a BadRecord."""
    import tensorflow as tf

    try:
        frames = _frames(serialized, num_views)
    except tf.errors.InvalidArgumentError as error:
        return BadRecord(shard, index, None, f"is not a scene with {num_views} frames "
                                             f"({_first_line(error)})")
    for i in range(num_views):
        try:
            tf.io.decode_jpeg(frames[i], channels=3)
        except tf.errors.InvalidArgumentError as error:
            return BadRecord(shard, index, i, f"does not decode as a JPEG ({_first_line(error)})")
    return BadRecord(shard, index, None, "failed to decode")


def check_shard(filename, num_views):
    """The first bad record of one shard file, or None when all of it reads and decodes."""
    import tensorflow as tf

    filename = str(filename)
    serialized = tf.data.TFRecordDataset(filename)
    decoded = serialized.map(lambda r: _decode_all(r, num_views),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    iterator, index = iter(decoded), 0
    while True:
        try:
            next(iterator)
        except StopIteration:
            return None
        except tf.errors.DataLossError as error:
            return BadRecord(filename, index, None,
                             f"cannot be read: the shard is truncated or corrupted from here on "
                             f"({_first_line(error)})")
        except tf.errors.InvalidArgumentError:
            # A tf.data map error ends only its element, so record `index` is the bad one.
            record = next(iter(serialized.skip(index).take(1)))
            return _locate_frame(record, num_views, filename, index)
        index += 1


def find_bad_record(filenames, num_views, progress=None):
    """The first bad record of `filenames` in file order, or None. `progress(i, n)` is called
    before shard i of n (for a progress line on long scans)."""
    filenames = [str(name) for name in filenames]
    for i, filename in enumerate(filenames):
        if progress is not None:
            progress(i, len(filenames))
        bad = check_shard(filename, num_views)
        if bad is not None:
            return bad
    return None


def describe_input_error(error, filenames, num_views):
    """A BadDataError for a TensorFlow error raised while reading `filenames`.

    The pipeline's own checks already name the record; a JPEG that fails inside the decoder
    does not, so the shards are scanned (`find_bad_record`) to name it.
    """
    text = getattr(error, "message", str(error))
    match = _PIPELINE_MESSAGE.search(text)
    if match:
        message = match.group(1).rstrip(" ,.")
    elif "jpeg" in text.lower():
        bad = find_bad_record(filenames, num_views)
        message = bad.message() if bad else f"a frame failed to decode ({_first_line(error)})"
    else:
        message = f"reading the data failed ({_first_line(error)})"
    if message.startswith("Frames are not"):
        return BadDataError(f"{message.replace('frame_size', '--frame_size')}.")
    return BadDataError(f"{message}. {ADVICE}")


@contextlib.contextmanager
def naming_bad_records(filenames, num_views, on_error=None):
    """Turns a TensorFlow data error raised in the block (reading `filenames`) into the
    BadDataError of `describe_input_error`, after calling `on_error()` when given."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        if on_error is not None:
            on_error()
        raise describe_input_error(error, filenames, num_views) from None


def main(argv=None):
    """`python -m gqn_tf.data.check --dataset NAME [--data_dir DIR] [--split train]`."""
    from gqn_tf.data import shards

    parser = cli.ArgumentParser(
        prog="python -m gqn_tf.data.check",
        description="Decodes every frame of every record of one split and names the first "
                    "damaged record (shard, record and frame, counting from 0).")
    parser.add_argument("--dataset", required=True, choices=sorted(datasets.DATASETS))
    parser.add_argument("--data_dir", default=datasets.DEFAULT_DATA_DIR)
    parser.add_argument("--split", default="train", choices=datasets.SPLITS)
    args = parser.parse_args(argv)
    cli.import_tensorflow()
    info = datasets.get_dataset_info(args.dataset)
    try:
        filenames = shards.list_shards(os.path.expanduser(args.data_dir), args.dataset,
                                       args.split)
    except (shards.DataNotFoundError, shards.ShardNamingError) as error:
        cli.fail(str(error), cli.DATA_EXIT, prog=parser.prog)

    def progress(i, n):
        sys.stderr.write(f"\rchecking shard {i + 1}/{n}")
        sys.stderr.flush()

    bad = find_bad_record(filenames, info.sequence_size, progress)
    sys.stderr.write("\n")
    if bad is not None:
        cli.fail(f"{bad.message()}. {ADVICE}", cli.DATA_EXIT, prog=parser.prog)
    print(f"All {len(filenames)} shards of {records.split_dir(args.data_dir, args.dataset, args.split)}"
          f" read and decode.")


if __name__ == "__main__":
    main()
