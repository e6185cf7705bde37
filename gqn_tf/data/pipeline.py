"""The input pipeline over the original `gqn-datasets` files, with DeepMind's reader semantics.

Two stages, so that other record sources (a TFDS builder) reuse the second one unchanged:

- `read_records`: shard files -> a stream of serialized records, each carried with its shard
  file and its index in that shard (for error messages), shard order and records shuffled.
- `scenes_from_records`: records -> batches of training dicts (docs/design.md §4). Per scene it
  draws `context_size + 1` distinct views (the last drawn is the query), decodes only those
  JPEGs, and maps their cameras to 7-dim viewpoints with `cameras.transform_cameras`.

Randomness is stateless and keyed by `(seed, batch number)` (the views of every scene in the
batch and, for a random context size, M), so the same seed, batch size and record order give
the same batches, whichever source the records came from. Work is batched before decoding so
that parsing, view choice and camera maths run once per batch instead of once per scene, and
only the M + 1 chosen JPEGs of a scene are decoded.

Bad input is named, not just reported: a shard that ends in a truncated or corrupted record and
a record that is not a scene of the dataset or holds a frame that is not a JPEG (checked by its
start/end markers, for all S frames, before any decoding) stop iteration with an
InvalidArgumentError naming the shard file and record index; with `skip_bad_records=True` they
are skipped, logged and counted in a `BadRecordCounter`. The checks are vectorized per batch
(per block of 32 records for the byte count) and cost little on the happy path.
"""

import random

import tensorflow as tf
from absl import logging

from gqn_tf.data import cameras as cameras_lib
from gqn_tf.data import datasets, records, shards

AUTOTUNE = tf.data.AUTOTUNE

# A TFRecord stores a payload of n bytes in n + 16: length (8), its CRC (4), data CRC (4).
_RECORD_OVERHEAD = 16
# Records per block read from a shard, checked and interleaved with other shards as one element.
_BLOCK = 32
_COUNTING = records.COUNTING_NOTE


class BadRecordCounter:
    """Counts what `skip_bad_records=True` skipped; read `count` after (or while) iterating.

    A truncated or corrupted shard counts once (the rest of that file is unreadable); a scene
    with a malformed frame list or a frame that is not a JPEG counts once.
    """

    def __init__(self):
        self._count = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_records")

    @property
    def count(self):
        return int(self._count.numpy())

    @property
    def variable(self):
        """The count as a tf.Variable, to keep it in a checkpoint."""
        return self._count

    def _record(self, message):
        """Counts and logs one bad record; runs only on the (rare) bad branch of a tf.cond."""
        tf.py_function(_log_skipped, [message], [])
        return self._count.assign_add(1)


def _log_skipped(message):
    logging.warning("Skipping bad input: %s", message.numpy().decode("utf-8", "replace"))


# Above this many JPEGs per decode call the decode ops are looped over, not unrolled.
_MAX_UNROLLED = 1024


def _decode_jpegs(jpegs, chunk, frame_size):
    """Decodes a 1-D string tensor of JPEGs to uint8 RGB [k, h, w, 3].

    tf.map_fn costs a while-loop iteration and a TensorArray write per element, about as much
    as a 64x64 JPEG decode itself, so the decode ops are unrolled when k is static (fixed batch
    and context size), and otherwise looped over chunks of `chunk` (the static batch size, of
    which k is a multiple) with the ops unrolled inside; one JPEG per iteration only when
    neither is static. `frame_size` is the expected size, for the static shape of k = 0.
    """
    decode = lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3)  # noqa: E731
    count = jpegs.shape[0]
    if count is not None and count <= _MAX_UNROLLED:
        if count == 0:
            return tf.zeros([0, frame_size, frame_size, 3], tf.uint8)
        # One Unpack op, not a StridedSlice op per JPEG.
        return tf.stack([decode(jpeg) for jpeg in tf.unstack(jpegs, num=count)])

    def loop():
        if chunk is not None and chunk <= _MAX_UNROLLED:
            chunks = tf.reshape(jpegs, [-1, chunk])  # [k / chunk, chunk]
            images = tf.map_fn(lambda c: tf.stack([decode(j) for j in tf.unstack(c, num=chunk)]),
                               chunks,
                               fn_output_signature=tf.uint8)  # [k / chunk, chunk, h, w, 3]
            return tf.reshape(images, tf.concat([[-1], tf.shape(images)[2:]], 0))
        return tf.map_fn(decode, jpegs, fn_output_signature=tf.uint8)

    # map_fn cannot stack zero elements of unknown shape (a context of M = 0 views).
    return tf.cond(tf.size(jpegs) > 0, loop,
                   lambda: tf.zeros([0, frame_size, frame_size, 3], tf.uint8))


def _frames_decode(frames):
    """[n, S] JPEG strings -> [n, S] bool, True where the frame decodes.

    decode_jpeg cannot fail quietly inside a graph, but a tf.data map that fails drops only its
    element: decoding in a nested dataset with `ignore_errors` leaves the indices that worked.
    """
    flat = tf.reshape(frames, [-1])
    decoded = tf.data.Dataset.from_tensor_slices(flat).enumerate().map(
        lambda i, jpeg: (i, tf.shape(tf.io.decode_jpeg(jpeg, channels=3))[0])
    ).ignore_errors()
    mask = decoded.reduce(tf.zeros(tf.shape(flat), tf.bool),
                          lambda mask, item: tf.tensor_scatter_nd_update(
                              mask, [[item[0]]], [True]))
    return tf.reshape(mask, tf.shape(frames))


def _to_unit_float(images):
    """uint8 -> float32 in [0, 1] in one pass: Dequantize (MIN_COMBINED, range [0, 1]) computes
    x * (1 / 255), bit for bit what cast-then-multiply gives, without the intermediate tensor."""
    return tf.quantization.dequantize(tf.bitcast(images, tf.quint8), 0.0, 1.0,
                                      mode="MIN_COMBINED")


def read_records(filenames, *, shuffle=True, seed=None, repeat=False, cycle_length=None,
                 shuffle_buffer_size=1000, skip_bad_records=False, bad_record_counter=None):
    """Reads shard files into a dataset of `{"record", "shard", "index"}` dicts.

    Shards are interleaved (deterministically, `cycle_length` at a time, in blocks of 32
    consecutive records, as DeepMind's reader read 16 at a time) after shuffling their order,
    and records pass through a shuffle buffer, both seeded by `seed`. `repeat` is False
    (one pass), True (forever) or a number of passes.

    TFRecordDataset stops a damaged file with a DataLossError that does not name it, so here
    read errors end the file quietly and a byte count checks that each shard was read to its
    end; a shard that was not fails with an error naming it (or, with `skip_bad_records`, is
    logged and counted). The count runs over blocks of records to keep the per-record cost low.
    """
    filenames = [str(name) for name in filenames]
    if not filenames:
        raise ValueError("read_records needs at least one shard file.")
    sizes = tf.constant([tf.io.gfile.stat(name).length for name in filenames], tf.int64)
    if skip_bad_records and bad_record_counter is None:
        bad_record_counter = BadRecordCounter()
    files = tf.data.Dataset.from_tensor_slices((filenames, sizes))
    if shuffle:
        files = files.shuffle(len(filenames), seed=seed, reshuffle_each_iteration=True)
    if repeat is True:
        files = files.repeat()
    elif repeat:
        files = files.repeat(repeat)

    def shard_blocks(filename, size):
        """The records of one shard in blocks of `_BLOCK`, each with its shard and indices; an
        empty block ends the shard, where the bytes read are checked against its size."""
        blocks = tf.data.TFRecordDataset(filename).ignore_errors().batch(_BLOCK)
        blocks = blocks.concatenate(tf.data.Dataset.from_tensors(tf.zeros([0], tf.string)))

        def check_block(state, block):
            index, offset = state  # records and bytes read before this block
            n = tf.size(block, out_type=tf.int64)
            read = offset + tf.reduce_sum(tf.cast(tf.strings.length(block), tf.int64)) \
                + _RECORD_OVERHEAD * n
            short = tf.equal(n, 0) & tf.not_equal(read, size)

            def message():
                return tf.strings.join([
                    "shard ", filename, " is truncated or corrupted: only its first ",
                    tf.strings.as_string(index), " records (", tf.strings.as_string(read),
                    " of ", tf.strings.as_string(size), " bytes) could be read"])

            if skip_bad_records:
                checked = tf.cond(short, lambda: bad_record_counter._record(message()),
                                  lambda: tf.constant(0, tf.int64))
            else:
                # A plain Assert (no cond around it): its message is a few string ops per block.
                checked = tf.debugging.Assert(tf.logical_not(short), [message()], summarize=1)
            with tf.control_dependencies([checked]):
                indices = index + tf.range(n)
            return (index + n, read), {
                "record": block,
                "shard": tf.fill(tf.shape(block), filename),
                "index": indices,
            }

        state = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
        return blocks.scan(state, check_block)

    # Whole blocks pass through the parallel interleave, which costs per element, and are split
    # into records after it.
    cycle_length = cycle_length or min(len(filenames), 16)
    stream = files.interleave(shard_blocks, cycle_length=cycle_length, block_length=1,
                              num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    if shuffle and shuffle_buffer_size > 1:
        stream = stream.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    return stream


def check_context_size(info, context_size, max_context_size=None):
    """Raises a ValueError unless the context sizes fit the S views of `info`'s scenes."""
    for name, value in (("context_size", context_size), ("max_context_size", max_context_size)):
        if value is None:
            continue
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
        if value >= info.sequence_size:
            raise ValueError(
                f"{name} {value} must be smaller than the {info.sequence_size} views per scene "
                f"of {info.name} (one view is the query)."
            )


def scenes_from_records(records_ds, info, *, batch_size, context_size=None,
                        max_context_size=None, seed=None, frame_size=None, drop_remainder=True,
                        skip_bad_records=False, bad_record_counter=None,
                        num_parallel_calls=AUTOTUNE, rows=None):
    """Turns a dataset of serialized scene records into batches of training dicts.

    `records_ds` yields scalar strings (serialized Examples in the original format) or the dicts
    of `read_records` (then errors name the shard and record index). Yields
    `context_frames` [B, M, H, W, 3] float32 in [0, 1], `context_cameras` [B, M, 7],
    `query_camera` [B, 7] and `target` [B, H, W, 3]. With `context_size=None`, M is drawn per
    batch uniformly from 0..`max_context_size` (default S - 1), as in Algorithm S1; the whole
    batch shares it. `seed=None` draws a fresh seed, so runs differ.

    rows: (start, stop) to yield only those rows of each batch of `batch_size` scenes, and
    decode only theirs: M and the views are drawn for the whole batch first, so the rows are
    exactly those a one-process run would give the replicas of one worker of several.
    """
    if isinstance(info, str):
        info = datasets.get_dataset_info(info)
    check_context_size(info, context_size, max_context_size)
    num_views = info.sequence_size
    num_raw = num_views * cameras_lib.RAW_CAMERA_DIM
    max_context = num_views - 1 if max_context_size is None else max_context_size
    seed = random.getrandbits(62) if seed is None else int(seed)
    if skip_bad_records and bad_record_counter is None:
        bad_record_counter = BadRecordCounter()
    has_source = isinstance(records_ds.element_spec, dict)

    def parse(chunk_number, chunk, strict):
        """A chunk of n records -> frames [n, S] (JPEG strings), raw cameras [n, S, 5], and
        ok [n] with `describe(i)`, a message about bad record i. With `strict`, an Assert stops
        at the first bad record instead; it needs no cond, which would make every batch run on
        TF's slower control-flow executor."""
        serialized = chunk["record"] if has_source else chunk
        n = tf.shape(serialized)[0]
        parsed = tf.io.parse_example(serialized, {
            "frames": tf.io.RaggedFeature(tf.string),
            "cameras": tf.io.RaggedFeature(tf.float32),
        })
        shape_ok = (tf.equal(parsed["frames"].row_lengths(), num_views)
                    & tf.equal(parsed["cameras"].row_lengths(), num_raw))

        def where(i):
            if has_source:
                return tf.strings.join(["record ", tf.strings.as_string(chunk["index"][i]),
                                        " of shard ", chunk["shard"][i]])
            position = chunk_number * batch_size + tf.cast(i, tf.int64)
            return tf.strings.format("record {} of the record stream", [position])

        not_a_scene = (f": not a scene of {info.name}, which has {num_views} frames and "
                       f"{num_raw} camera values per record{_COUNTING}")

        def first_false(flags):
            return tf.argmin(tf.cast(flags, tf.int32), output_type=tf.int32)

        def from_flat(flat_frames, flat_raw):
            """Reshaping the flat values is free once every record has the right lengths."""
            return (tf.reshape(flat_frames, [n, num_views]), tf.reshape(flat_raw, [n, num_raw]))

        if strict:
            # The identities carry the control dependency: tf.reshape drops it.
            with tf.control_dependencies([tf.debugging.Assert(
                    tf.reduce_all(shape_ok),
                    [tf.strings.join([where(first_false(shape_ok)), not_a_scene])])]):
                frames, raw = from_flat(tf.identity(parsed["frames"].flat_values),
                                        tf.identity(parsed["cameras"].flat_values))
        else:  # bad records are padded (to_tensor) so that they can be masked out
            frames, raw = tf.cond(
                tf.reduce_all(shape_ok),
                lambda: from_flat(parsed["frames"].flat_values, parsed["cameras"].flat_values),
                lambda: (parsed["frames"].to_tensor(default_value="", shape=[None, num_views]),
                         parsed["cameras"].to_tensor(shape=[None, num_raw])))
        raw = tf.reshape(raw, [n, num_views, cameras_lib.RAW_CAMERA_DIM])
        # The batch size is static with drop_remainder; keep it so that decoding is unrolled.
        frames.set_shape([serialized.shape[0], num_views])
        raw.set_shape([serialized.shape[0], num_views, cameras_lib.RAW_CAMERA_DIM])
        # decode_jpeg fails on garbage or cut-short data without naming the record: check first.
        jpeg_ok = (tf.equal(tf.strings.substr(frames, 0, 2), records.JPEG_START)
                   & tf.equal(tf.strings.substr(frames, -2, 2), records.JPEG_END))
        ok = shape_ok & tf.reduce_all(jpeg_ok, axis=1)

        def not_a_jpeg(i):
            return tf.strings.join([where(i), ": frame ",
                                    tf.strings.as_string(first_false(jpeg_ok[i])),
                                    " is not a JPEG image (no start/end marker)", _COUNTING])

        if strict:
            with tf.control_dependencies([tf.debugging.Assert(
                    tf.reduce_all(ok), [not_a_jpeg(first_false(ok))], summarize=1)]):
                frames = tf.identity(frames)
            return frames, raw, ok, None

        # Skipping bad records: a JPEG with intact markers and a damaged body fails only when
        # decoded, so every frame is test-decoded here (the price of skipping).
        decode_ok = _frames_decode(frames) | tf.logical_not(jpeg_ok)
        ok = ok & tf.reduce_all(decode_ok, axis=1)

        def does_not_decode(i):
            return tf.strings.join([where(i), ": frame ",
                                    tf.strings.as_string(first_false(decode_ok[i])),
                                    " does not decode as a JPEG", _COUNTING])

        def describe(i):
            return tf.cond(
                shape_ok[i],
                lambda: tf.cond(tf.reduce_all(jpeg_ok[i]), lambda: does_not_decode(i),
                                lambda: not_a_jpeg(i)),
                lambda: tf.strings.join([where(i), not_a_scene]))

        return frames, raw, ok, describe

    def choose(batch_number, frames, raw):
        """Draws M and the views of a batch: the chosen JPEGs and their cameras, undecoded."""
        n = tf.shape(frames)[0]
        if context_size is None:
            num_context = tf.random.stateless_uniform(
                [], seed=tf.stack([tf.constant(seed, tf.int64), 2 * batch_number + 1]),
                minval=0, maxval=max_context + 1, dtype=tf.int32)
        else:
            num_context = context_size  # static, so the number of JPEGs per batch is too
        # A random permutation of the S views per scene; its first M views are the context and
        # view M the query (the reader's "last drawn").
        noise = tf.random.stateless_uniform(
            [n, num_views], seed=tf.stack([tf.constant(seed, tf.int64), 2 * batch_number]))
        views = tf.argsort(noise, axis=1)[:, : num_context + 1]  # [n, M + 1]
        viewpoints = cameras_lib.transform_cameras(tf.gather(raw, views, batch_dims=1))
        return {
            "context_jpegs": tf.gather(frames, views[:, :num_context], batch_dims=1),  # [n, M]
            "target_jpegs": tf.gather(frames, views[:, num_context], batch_dims=1),    # [n]
            "context_cameras": viewpoints[:, :num_context],         # [n, M, 7]
            "query_camera": viewpoints[:, num_context],             # [n, 7]
        }

    def decode(chosen):
        """Decodes the chosen JPEGs: the training dict."""
        static_n = chosen["target_jpegs"].shape[0]  # known for fixed-size batches
        n = tf.shape(chosen["target_jpegs"])[0]
        num_context = (context_size if context_size is not None
                       else tf.shape(chosen["context_jpegs"])[1])  # static when fixed
        size = frame_size or info.frame_size

        def frames_of(jpegs, shape):  # JPEGs [n, ...] -> float32 frames `shape`
            images = _decode_jpegs(tf.reshape(jpegs, [-1]), static_n, info.frame_size)
            if frame_size is not None:
                images = tf.image.resize(images, [frame_size, frame_size], method="bilinear")
                images = images / 255.0
            else:
                with tf.control_dependencies([tf.debugging.assert_equal(
                        tf.shape(images)[1:3], [info.frame_size, info.frame_size],
                        message=f"Frames are not {info.frame_size}x{info.frame_size}, the frame "
                                f"size of {info.name}; pass frame_size to resize them.")]):
                    images = _to_unit_float(images)
            return tf.reshape(images, shape)

        # Context and target are decoded into their own tensors, so neither is sliced (copied)
        # out of a joint one.
        return {
            "context_frames": frames_of(chosen["context_jpegs"], [n, num_context, size, size, 3]),
            "context_cameras": chosen["context_cameras"],
            "query_camera": chosen["query_camera"],
            "target": frames_of(chosen["target_jpegs"], [n, size, size, 3]),
        }

    def batches(dataset, scenes_of):
        """Batches from `dataset`, whose elements `scenes_of` turns into (batch number, frames,
        raw): decoded whole, or with `rows` only the rows [start, stop) of each, after a
        prefetch of the undecoded batches. The decoding map then runs in step with the consumer
        and holds no buffer, so the iterator's state (what a checkpoint saves) is the same for
        every row range."""
        if rows is None:
            return dataset.map(lambda *e: decode(choose(*scenes_of(*e))),
                               num_parallel_calls=num_parallel_calls)
        start, stop = rows
        chosen = dataset.map(lambda *e: choose(*scenes_of(*e)),
                             num_parallel_calls=num_parallel_calls)
        decoded = chosen.prefetch(AUTOTUNE).map(
            lambda c: decode({name: value[start:stop] for name, value in c.items()}))
        # tf.data would otherwise run that map in parallel or prefetch after it, both of which
        # buffer decoded rows that another worker could not use.
        options = tf.data.Options()
        options.experimental_optimization.map_parallelization = False
        options.experimental_optimization.inject_prefetch = False
        return decoded.with_options(options)

    if skip_bad_records:
        def drop_bad(chunk_number, chunk):
            frames, raw, ok, describe = parse(chunk_number, chunk, strict=False)

            def count_bad():
                bad = tf.cast(tf.where(tf.logical_not(ok))[:, 0], tf.int32)
                return tf.map_fn(lambda i: bad_record_counter._record(describe(i)), bad,
                                 fn_output_signature=tf.int64)

            tf.cond(tf.reduce_all(ok), lambda: tf.zeros([0], tf.int64), count_bad)
            return tf.boolean_mask(frames, ok), tf.boolean_mask(raw, ok)

        # Bad scenes leave a chunk short, so full batches are formed again after dropping them.
        scenes = records_ds.batch(batch_size).enumerate().map(
            drop_bad, num_parallel_calls=num_parallel_calls)
        scenes = scenes.unbatch().batch(batch_size, drop_remainder=drop_remainder)
        return batches(scenes.enumerate(), lambda b, s: (b, *s))

    def parse_strictly(batch_number, chunk):
        frames, raw, _, _ = parse(batch_number, chunk, strict=True)
        return batch_number, frames, raw

    scenes = records_ds.batch(batch_size, drop_remainder=drop_remainder).enumerate()
    return batches(scenes, parse_strictly)


def make_dataset(name, root, split="train", batch_size=36, context_size=None, seed=None,
                 frame_size=None, shuffle=True, repeat=True, skip_bad_records=False,
                 bad_record_counter=None, max_context_size=None, drop_remainder=True,
                 shuffle_buffer_size=1000, cycle_length=None, filenames=None, rows=None):
    """The training/evaluation input of dataset `name` from `<root>/<name>/<split>/` shards.

    Yields the dicts of `scenes_from_records` (docs/design.md §4), prefetched. `seed` makes the
    whole stream (shard order, record shuffle, views, context sizes) reproducible, as long as
    TensorFlow's global seed is the same too: tf.data's shuffles combine their seed with it
    (`keras.utils.set_random_seed` changes it; `shuffle=False` reads the records in file order).
    `repeat` is True (forever), False (one pass) or a number of passes. Bad records raise an
    error naming the shard file and record index unless `skip_bad_records`, which skips them and
    counts them in `bad_record_counter` (a `BadRecordCounter`, created and only logged if not
    given). `filenames`: the split's shard files when the caller has listed them already.
    `rows`: (start, stop), one worker's rows of each batch (`scenes_from_records`), not
    prefetched after decoding so that every worker's iterator saves the same state.
    """
    info = datasets.get_dataset_info(name)
    check_context_size(info, context_size, max_context_size)
    if seed is None:
        seed = random.getrandbits(62)
    if skip_bad_records and bad_record_counter is None:
        bad_record_counter = BadRecordCounter()
    records_ds = read_records(
        filenames or shards.list_shards(root, name, split), shuffle=shuffle, seed=seed, repeat=repeat,
        cycle_length=cycle_length, shuffle_buffer_size=shuffle_buffer_size,
        skip_bad_records=skip_bad_records, bad_record_counter=bad_record_counter)
    dataset = scenes_from_records(
        records_ds, info, batch_size=batch_size, context_size=context_size,
        max_context_size=max_context_size, seed=seed, frame_size=frame_size,
        drop_remainder=drop_remainder, skip_bad_records=skip_bad_records,
        bad_record_counter=bad_record_counter, rows=rows)
    if skip_bad_records:
        # The counter's variable and log call are state outside the iterator; a checkpoint of
        # the iterator leaves them out (the training loop checkpoints the count itself).
        options = tf.data.Options()
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.IGNORE)
        dataset = dataset.with_options(options)
    return dataset if rows is not None else dataset.prefetch(AUTOTUNE)
