import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import cameras, datasets, records


@pytest.mark.parametrize(
    "num_shards, first, last",
    [(9, "1-of-9.tfrecord", "9-of-9.tfrecord"),
     (900, "001-of-900.tfrecord", "900-of-900.tfrecord"),
     (2160, "0001-of-2160.tfrecord", "2160-of-2160.tfrecord")],
)
def test_shard_naming_round_trips(num_shards, first, last):
    assert records.shard_name(1, num_shards) == first
    assert records.shard_name(num_shards, num_shards) == last
    for index in (1, 2, num_shards // 2 + 1, num_shards):
        assert records.parse_shard_name(records.shard_name(index, num_shards)) == (index, num_shards)


def test_parse_shard_name_rejects_foreign_names():
    for name in ("1-of-900.tfrecord", "001-of-900.tfrecord.gz", "notes.txt", "01-of-9.tfrecord"):
        assert records.parse_shard_name(name) is None


def test_shard_name_rejects_index_out_of_range():
    with pytest.raises(ValueError, match="outside 1..9"):
        records.shard_name(10, 9)


def test_serialized_scene_parses_with_the_original_spec():
    frames = [tf.io.encode_jpeg(tf.fill([8, 8, 3], tf.constant(i * 40, tf.uint8))).numpy()
              for i in range(3)]
    raw = np.arange(15, dtype=np.float32).reshape(3, 5)
    parsed = tf.io.parse_single_example(records.serialize_scene(frames, raw), records.feature_spec(3))
    assert parsed["frames"].numpy().tolist() == frames
    np.testing.assert_array_equal(parsed["cameras"].numpy(), raw.reshape(-1))


def test_camera_transform_uses_the_reader_order():
    raw = np.array([[1.0, 2.0, 3.0, 0.3, -0.4]], np.float32)
    got = cameras.transform_cameras(raw).numpy()
    want = [1, 2, 3, np.sin(0.3), np.cos(0.3), np.sin(-0.4), np.cos(-0.4)]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown dataset 'shepard_metzler'.*shepard_metzler_7_parts"):
        datasets.get_dataset_info("shepard_metzler")


def test_serialize_scene_rejects_cameras_that_do_not_match_the_frames():
    frames = [b"\xff\xd8jpeg\xff\xd9"] * 3
    with pytest.raises(ValueError, match=r"cameras must have shape \[3, 5\] for 3 frames, got \[3, 7\]"):
        records.serialize_scene(frames, np.zeros((3, 7), np.float32))
