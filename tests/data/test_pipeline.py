"""Tests of gqn_tf/data/pipeline.py on real TFRecord files in the original format.

Every frame is a flat colour that encodes where it came from (red: view, green: scene, blue:
shard), and every raw camera encodes the same, so a test can tell which views came back.
"""

import logging as py_logging
import os

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import cameras, datasets, pipeline, records

DATASET = "shepard_metzler_7_parts"
INFO = datasets.get_dataset_info(DATASET)
S = INFO.sequence_size  # 15
SIZE = INFO.frame_size  # 64
TOLERANCE = 4 / 255  # JPEG error on a flat colour


def colour(shard, scene, view):
    return (16 * view + 8, 40 * scene + 20, 80 * shard + 40)


def raw_camera(shard, scene, view):
    return [shard, scene, view, 0.1 * view, -0.05 * view]


def jpeg(rgb):
    return tf.io.encode_jpeg(np.full([SIZE, SIZE, 3], rgb, np.uint8)).numpy()


def known_scene(shard, scene, broken_view=None):
    frames = [jpeg(colour(shard, scene, view)) for view in range(S)]
    if broken_view is not None:
        frames[broken_view] = b"these bytes are not a JPEG image"
    cams = [raw_camera(shard, scene, view) for view in range(S)]
    return records.serialize_scene(frames, cams)


def write_split(root, scenes_per_shard, split="train", broken=()):
    """Writes shards `i-of-n` of known scenes; `broken` holds (shard, scene, view) to corrupt."""
    directory = records.split_dir(str(root), DATASET, split)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for shard, count in enumerate(scenes_per_shard):
        path = os.path.join(directory, records.shard_name(shard + 1, len(scenes_per_shard)))
        with tf.io.TFRecordWriter(path) as writer:
            for scene in range(count):
                bad = [v for (s, i, v) in broken if (s, i) == (shard, scene)]
                writer.write(known_scene(shard, scene, bad[0] if bad else None))
        paths.append(path)
    return paths


def identify(frame):
    """(shard, scene, view) of a decoded flat-colour frame, checking it is flat."""
    mean = frame.reshape(-1, 3).mean(0) * 255
    np.testing.assert_allclose(frame, np.broadcast_to(mean / 255, frame.shape), atol=TOLERANCE)
    red, green, blue = mean
    return round((blue - 40) / 80), round((green - 20) / 40), round((red - 8) / 16)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gqn")
    write_split(root, [3, 3])
    return str(root)


def make(root, **kwargs):
    args = dict(batch_size=2, context_size=5, seed=7, shuffle=False, repeat=False)
    args.update(kwargs)
    return pipeline.make_dataset(DATASET, root, "train", **args)


def test_scenes_return_distinct_views_with_their_own_cameras(root):
    batches = list(make(root, batch_size=3, context_size=5))
    seen = set()
    for batch in batches:
        for b in range(3):
            frames = [*batch["context_frames"][b].numpy(), batch["target"][b].numpy()]
            views = [identify(frame) for frame in frames]
            shard, scene = views[0][:2]
            assert all(v[:2] == (shard, scene) for v in views)
            view_ids = [v[2] for v in views]
            assert len(set(view_ids)) == 6 and all(0 <= v < S for v in view_ids)
            want = cameras.transform_cameras(
                np.array([raw_camera(shard, scene, v) for v in view_ids], np.float32)).numpy()
            got = np.concatenate(
                [batch["context_cameras"][b].numpy(), batch["query_camera"][b].numpy()[None]])
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            seen.add((shard, scene))
    assert seen == {(s, i) for s in range(2) for i in range(3)}


@pytest.mark.parametrize("context_size, frame_size", [(0, None), (1, None), (5, None), (5, 32)])
def test_shapes_and_range(root, context_size, frame_size):
    batch = next(iter(make(root, context_size=context_size, frame_size=frame_size)))
    size = frame_size or SIZE
    assert batch["context_frames"].shape == (2, context_size, size, size, 3)
    assert batch["context_cameras"].shape == (2, context_size, cameras.CAMERA_DIM)
    assert batch["query_camera"].shape == (2, cameras.CAMERA_DIM)
    assert batch["target"].shape == (2, size, size, 3)
    for key in ("context_frames", "target"):
        assert batch[key].dtype == tf.float32
        values = batch[key].numpy()
        assert ((values >= 0.0) & (values <= 1.0)).all()
    if frame_size:  # a flat colour stays the same colour after resizing
        identify(batch["target"][0].numpy())


def test_random_context_size_varies_per_batch_and_stays_below_s(root):
    ds = make(root, context_size=None, repeat=True, batch_size=2).take(40)
    sizes = []
    for batch in ds:
        m = batch["context_frames"].shape[1]
        assert batch["context_cameras"].shape[1] == m
        sizes.append(m)
    assert len(set(sizes)) > 5
    assert max(sizes) < S and min(sizes) >= 0
    capped = [b["context_frames"].shape[1]
              for b in make(root, context_size=None, max_context_size=2, repeat=True).take(20)]
    assert set(capped) <= {0, 1, 2} and len(set(capped)) > 1


def test_a_seed_makes_runs_identical(root):
    def run(seed):
        ds = make(root, seed=seed, shuffle=True, repeat=True, context_size=None).take(6)
        return [{k: v.numpy() for k, v in batch.items()} for batch in ds]

    first, second, other = run(3), run(3), run(4)
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(a["query_camera"].shape != b["query_camera"].shape
               or not np.array_equal(a["query_camera"], b["query_camera"])
               for a, b in zip(first, other))


def test_tensorflows_global_seed_moves_the_shuffle_only(root):
    # As make_dataset's docstring says: tf.data's shuffles combine `seed` with the global seed,
    # while the views are drawn from `seed` alone, so unshuffled streams do not depend on it.
    def run(global_seed, shuffle):
        tf.random.set_seed(global_seed)
        try:
            ds = make(root, seed=3, shuffle=shuffle, repeat=False, context_size=2)
            return np.concatenate([batch["query_camera"].numpy() for batch in ds])
        finally:
            tf.random.set_seed(None)

    np.testing.assert_array_equal(run(1, shuffle=False), run(2, shuffle=False))
    shuffled = run(1, shuffle=True)
    np.testing.assert_array_equal(run(1, shuffle=True), shuffled)
    assert not np.array_equal(run(2, shuffle=True), shuffled)


def test_scenes_from_plain_records_match_make_dataset(root):
    """The contract for other record sources (a TFDS builder): same records, same seed, same
    batches."""
    from gqn_tf.data import shards

    files = shards.list_shards(root, DATASET, "train")
    plain = pipeline.read_records(files, shuffle=False).map(lambda r: r["record"])
    from_records = pipeline.scenes_from_records(plain, INFO, batch_size=2, context_size=None,
                                                seed=11)
    from_files = make(root, context_size=None, seed=11)
    for a, b in zip(from_records, from_files, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_context_size_must_be_smaller_than_s(root):
    with pytest.raises(ValueError, match=(
            "context_size 15 must be smaller than the 15 views per scene of "
            "shepard_metzler_7_parts")):
        make(root, context_size=15)


def test_unknown_dataset_is_named(root):
    with pytest.raises(ValueError, match="Unknown dataset 'shepard'"):
        pipeline.make_dataset("shepard", root, "train", batch_size=2)


def test_missing_data_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="001-of-900.tfrecord"):
        make(str(tmp_path))


def truncate(path, num_bytes=100):
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - num_bytes)


def test_a_truncated_shard_is_named(tmp_path):
    paths = write_split(tmp_path, [3, 3])
    truncate(paths[1])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"shard .*2-of-2\.tfrecord is truncated or corrupted: only its "
                             r"first 2 records"):
        list(make(str(tmp_path), batch_size=1))


def write_long_shard(root, count, bad_record=None):
    """One shard `1-of-1` of `count` identical scenes, longer than a read block (32 records);
    record `bad_record` has a non-JPEG frame 3. Returns its path and the size of one record."""
    directory = records.split_dir(str(root), DATASET, "train")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, records.shard_name(1, 1))
    frame, cams = jpeg((100, 150, 200)), [raw_camera(0, 0, view) for view in range(S)]
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            frames = [frame] * S
            if i == bad_record:
                frames[3] = b"these bytes are not a JPEG image"
            writer.write(records.serialize_scene(frames, cams))
    return path, os.path.getsize(path) // count


def test_a_corrupted_record_in_the_middle_of_a_shard_is_named(tmp_path):
    path, record_size = write_long_shard(tmp_path, 75)
    with open(path, "rb+") as f:  # a byte inside record 40's payload: its CRC no longer matches
        f.seek(40 * record_size + 12 + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"shard .*1-of-1\.tfrecord is truncated or corrupted: only its "
                             r"first 40 records"):
        list(make(str(tmp_path), batch_size=5))


def test_records_are_counted_across_read_blocks(tmp_path):
    write_long_shard(tmp_path, 75, bad_record=70)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"record 70 of shard .*1-of-1\.tfrecord: frame 3 is not a JPEG"):
        list(make(str(tmp_path), batch_size=5))


def test_a_frame_that_is_not_a_jpeg_is_named_with_its_record(tmp_path):
    write_split(tmp_path, [3, 2], broken=[(0, 2, 4)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"record 2 of shard .*1-of-2\.tfrecord: frame 4 is not a JPEG"):
        list(make(str(tmp_path), batch_size=2, drop_remainder=False))


def test_plain_records_of_another_dataset_are_named_by_position():
    rooms = datasets.get_dataset_info("rooms_ring_camera")  # S = 10, not 15
    plain = tf.data.Dataset.from_tensor_slices([known_scene(0, 0), known_scene(0, 1)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"record 0 of the record stream: not a scene of rooms_ring_camera"):
        list(pipeline.scenes_from_records(plain, rooms, batch_size=2, context_size=3, seed=0))


def test_skip_bad_records_skips_and_counts(tmp_path, caplog):
    paths = write_split(tmp_path, [5, 3], broken=[(0, 1, 0), (0, 3, 14)])
    truncate(paths[1])  # its last scene is lost
    counter = pipeline.BadRecordCounter()
    with caplog.at_level(py_logging.WARNING):
        batches = list(make(str(tmp_path), batch_size=2, drop_remainder=False,
                            skip_bad_records=True, bad_record_counter=counter))
    scenes = [identify(b["target"][i].numpy())[:2] for b in batches
              for i in range(b["target"].shape[0])]
    assert sorted(scenes) == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 1)]
    assert counter.count == 3
    log = caplog.text
    assert "record 1 of shard" in log and "frame 0 is not a JPEG" in log
    assert "2-of-2.tfrecord is truncated" in log


def test_frames_of_another_size_ask_for_frame_size():
    small = [tf.io.encode_jpeg(np.full([32, 32, 3], 90, np.uint8)).numpy()] * S
    plain = tf.data.Dataset.from_tensors(records.serialize_scene(small, np.zeros([S, 5])))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Frames are not 64x64.*frame_size"):
        list(pipeline.scenes_from_records(plain, INFO, batch_size=1, context_size=2, seed=0))
    batch = next(iter(pipeline.scenes_from_records(plain, INFO, batch_size=1, context_size=2,
                                                   seed=0, frame_size=64)))
    assert batch["target"].shape == (1, 64, 64, 3)


def test_the_bundled_sample_reads(sample_dir):
    if not (sample_dir / DATASET / "train").is_dir():
        pytest.skip("data/sample is not there yet")
    batch = next(iter(pipeline.make_dataset(DATASET, str(sample_dir), "train", batch_size=4,
                                            context_size=3, seed=0)))
    assert batch["context_frames"].shape == (4, 3, SIZE, SIZE, 3)


@pytest.mark.parametrize("context_size", [5, None])
def test_fixed_and_variable_batch_sizes_decode_the_same_frames(root, context_size):
    """Fixed-size batches decode with unrolled ops (or chunks of them), a short last batch with
    a loop over single JPEGs; both give the same tensors."""
    fixed = make(root, batch_size=3, context_size=context_size, drop_remainder=True)
    variable = make(root, batch_size=3, context_size=context_size, drop_remainder=False)
    for a, b in zip(fixed, variable, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


@pytest.mark.parametrize("skip_bad_records", [False, True])
def test_row_ranges_of_workers_put_together_are_the_whole_batch(root, skip_bad_records):
    def run(rows):
        ds = make(root, batch_size=4, seed=3, shuffle=True, repeat=True, context_size=None,
                  rows=rows, skip_bad_records=skip_bad_records).take(5)
        return [{k: v.numpy() for k, v in batch.items()} for batch in ds]

    whole, first, second = run(None), run((0, 1)), run((1, 4))
    for batch, a, b in zip(whole, first, second):
        assert a["target"].shape[0] == 1 and b["target"].shape[0] == 3
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), batch[key], key)


def test_a_row_range_iterator_saves_the_state_of_every_row_range(root, tmp_path):
    # What a worker restores from the chief's checkpoint continues its own rows exactly.
    def dataset(rows):
        return make(root, batch_size=4, seed=5, shuffle=True, repeat=True, context_size=None,
                    rows=rows)

    chief = iter(dataset((0, 2)))
    for _ in range(3):
        next(chief)
    path = tf.train.Checkpoint(data=chief).write(str(tmp_path / "data"))
    worker = iter(dataset((2, 4)))
    tf.train.Checkpoint(data=worker).read(path).assert_consumed()
    expected = list(dataset(None).skip(3).take(2))
    for batch in expected:
        got = next(worker)
        for key in batch:
            np.testing.assert_array_equal(got[key], batch[key].numpy()[2:4], key)
