"""The reader without TensorFlow (gqn_tf/data/standalone.py) against TensorFlow's own reading of
the same real TFRecord files: same records, same frames and cameras, same decoded pixels."""

import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import cameras, records, shards, standalone

DATASET = "shepard_metzler_7_parts"
S = 15


def _train_shards(sample_dir):
    return shards.list_shards(sample_dir, DATASET, "train")


def test_crc32c_matches_the_known_check_value():
    assert standalone.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_records_and_scenes_equal_what_tensorflow_parses(sample_dir):
    spec = records.feature_spec(S)
    for path in _train_shards(sample_dir):
        index = standalone.index_records(path)
        expected = [raw.numpy() for raw in tf.data.TFRecordDataset(path)]
        assert len(index) == len(expected)
        with open(path, "rb") as f:
            for (offset, length), raw in zip(index, expected):
                f.seek(offset)
                payload = f.read(length)
                assert payload == raw
                frames, raw_cameras = standalone.parse_scene(payload, S)
                parsed = tf.io.parse_single_example(raw, spec)
                assert frames == list(parsed["frames"].numpy())
                np.testing.assert_array_equal(raw_cameras,
                                              parsed["cameras"].numpy().reshape(S, 5))


def test_frames_decode_to_tensorflows_accurate_dct_pixels(sample_dir):
    """Pillow's libjpeg uses the accurate integer DCT; tf.io.decode_jpeg's default (the tf.data
    pipeline's) is the fast one, which differs by a few levels."""
    path = _train_shards(sample_dir)[0]
    raw = next(iter(tf.data.TFRecordDataset(path))).numpy()
    frames, _ = standalone.parse_scene(raw, S)
    for jpeg in frames[:5]:
        decoded = standalone.decode_frame(jpeg)
        np.testing.assert_array_equal(
            decoded, tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE").numpy())
        fast = tf.io.decode_jpeg(jpeg, channels=3).numpy()
        assert np.abs(decoded.astype(int) - fast).max() <= 4
    resized = standalone.decode_frame(frames[0], 32)
    assert resized.shape == (32, 32, 3) and resized.dtype == np.uint8


def test_a_batch_is_a_function_of_seed_and_step(sample_dir):
    sampler = standalone.SceneSampler(sample_dir, DATASET, batch_size=5, max_context_size=4,
                                      frame_size=32, seed=3)
    assert sampler.num_scenes == 160
    first, again = sampler.batch(7), sampler.batch(7)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    m = first["context_frames"].shape[1]
    assert 0 <= m <= 4
    assert first["context_frames"].shape == (5, m, 32, 32, 3)
    assert first["context_cameras"].shape == (5, m, 7)
    assert first["query_camera"].shape == (5, 7) and first["target"].shape == (5, 32, 32, 3)
    assert first["target"].dtype == np.float32
    assert 0.0 <= first["target"].min() and first["target"].max() <= 1.0
    other = sampler.batch(8)
    assert not np.array_equal(other["query_camera"], first["query_camera"])
    contexts = {sampler.batch(step)["context_frames"].shape[1] for step in range(30)}
    assert len(contexts) > 2  # M is drawn per batch


def test_viewpoints_come_from_the_one_camera_transform(sample_dir):
    sampler = standalone.SceneSampler(sample_dir, DATASET, batch_size=4, context_size=2, seed=1)
    batch = sampler.batch(0)
    # Rebuild the batch's query viewpoints from the raw cameras of its scenes: every one of them
    # is the transform of one of its scene's raw cameras.
    rng = np.random.default_rng([1, 0])
    scenes = rng.choice(sampler.num_scenes, 4, replace=False)
    for row, scene in enumerate(scenes):
        views = rng.choice(S, 3, replace=False)
        _, raw_cameras = standalone.parse_scene(sampler._read(scene), S)
        expected = np.asarray(cameras.transform_cameras(raw_cameras[views]))
        np.testing.assert_allclose(batch["context_cameras"][row], expected[:2], rtol=1e-6)
        np.testing.assert_allclose(batch["query_camera"][row], expected[2], rtol=1e-6)


def _copy_split(sample_dir, root, change):
    """The sample's train split under `root`, with `change(name, data) -> data` applied to each
    shard file's bytes."""
    target = root / DATASET / "train"
    target.mkdir(parents=True)
    for path in _train_shards(sample_dir):
        name = os.path.basename(path)
        with open(path, "rb") as f:
            (target / name).write_bytes(change(name, f.read()))
    return root


def test_a_truncated_shard_is_named(sample_dir, tmp_path):
    root = _copy_split(sample_dir, tmp_path,
                       lambda name, data: data[:-100] if name.startswith("2-") else data)
    with pytest.raises(standalone.BadDataError,
                       match=r"record 39 of shard .*2-of-4\.tfrecord.*truncated shard"):
        standalone.SceneSampler(root, DATASET)


def test_a_shard_ending_inside_a_header_is_named(sample_dir, tmp_path):
    root = _copy_split(sample_dir, tmp_path,
                       lambda name, data: data + b"\x05" * 5 if name.startswith("4-") else data)
    with pytest.raises(standalone.BadDataError,
                       match=r"record 40 of shard .*4-of-4\.tfrecord.*ends inside a record "
                             r"header \(truncated shard\)\. Re-download that shard"):
        standalone.SceneSampler(root, DATASET)


def test_a_corrupted_length_header_is_named(sample_dir, tmp_path):
    def corrupt(name, data):
        if not name.startswith("1-"):
            return data
        data = bytearray(data)
        data[0] ^= 0x01  # record 0's length
        return bytes(data)

    root = _copy_split(sample_dir, tmp_path, corrupt)
    with pytest.raises(standalone.BadDataError,
                       match=r"record 0 of shard .*1-of-4\.tfrecord.*fails its CRC"):
        standalone.SceneSampler(root, DATASET)


def _rewrite_record(data, index, payload):
    """The shard bytes `data` with record `index` replaced by `payload`, framed and CRC'd."""
    out, position, number = bytearray(), 0, 0
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position:position + 8])
        end = position + 12 + length + 4
        if number == index:
            header = struct.pack("<Q", len(payload))
            out += header + struct.pack("<I", standalone.masked_crc32c(header)) + payload
            out += struct.pack("<I", standalone.masked_crc32c(payload))
        else:
            out += data[position:end]
        position, number = end, number + 1
    return bytes(out)


@pytest.mark.parametrize("frames, words", [
    ([b"not a jpeg"] * S, "frame [0-9]+ does not decode as a JPEG"),
    ([b"x"] * (S - 1), f"expected {S} frames, found {S - 1}"),
])
def test_a_bad_scene_is_named_when_read(sample_dir, tmp_path, frames, words):
    payload = records.serialize_scene(frames, np.zeros((len(frames), 5)))
    root = _copy_split(
        sample_dir, tmp_path,
        lambda name, data: _rewrite_record(data, 0, payload) if name.startswith("1-") else data)
    sampler = standalone.SceneSampler(root, DATASET, batch_size=160, context_size=1)  # every scene
    with pytest.raises(standalone.BadDataError,
                       match=rf"record 0 of shard .*1-of-4\.tfrecord.*{words}"):
        sampler.batch(0)


def test_a_record_that_is_no_example_is_named_when_read(sample_dir, tmp_path):
    root = _copy_split(
        sample_dir, tmp_path,
        lambda name, data: _rewrite_record(data, 0, b"\xff\xff\xff") if name.startswith("1-")
        else data)
    sampler = standalone.SceneSampler(root, DATASET, batch_size=160, context_size=1)
    with pytest.raises(standalone.BadDataError,
                       match=r"record 0 of shard .*1-of-4\.tfrecord.*not a tf\.train\.Example"):
        sampler.batch(0)


def test_a_context_size_the_dataset_cannot_give_is_refused(sample_dir):
    with pytest.raises(ValueError, match="--context_size 15: .* has 15 views"):
        standalone.SceneSampler(sample_dir, DATASET, context_size=15)


def test_synthetic_scenes_rendered_in_memory_equal_the_synthesized_files(sample_dir):
    """The bundled sample is synthesize.py's seed-0 output: the in-memory sampler gives the
    same frames and cameras (the same JPEG bytes decoded the same way)."""
    files = standalone.SceneSampler(str(sample_dir), "shepard_metzler_7_parts", "test",
                                    frame_size=32, seed=3)
    memory = standalone.SyntheticSceneSampler("shepard_metzler_7_parts", "test", num_scenes=6,
                                              synthetic_seed=0, frame_size=32, seed=3,
                                              workers=1)
    assert memory.num_scenes == 6
    for a, b in zip(files.fixed_batches(6, 3, 4), memory.fixed_batches(6, 3, 4)):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        standalone.SyntheticSceneSampler(DATASET, "valid", num_scenes=1, workers=1)
    with pytest.raises(ValueError, match="num_scenes must be at least 1"):
        standalone.SyntheticSceneSampler(DATASET, "train", num_scenes=0, workers=1)
