"""Tests of gqn_tf/data/shards.py: which shard files a split has, and what it says when not."""

import logging as py_logging
import os

import pytest

from gqn_tf.data import records, shards

DATASET = "shepard_metzler_7_parts"  # 900 train shards in the table


def touch(root, names, split="train"):
    directory = records.split_dir(str(root), DATASET, split)
    os.makedirs(directory, exist_ok=True)
    for name in names:
        open(os.path.join(directory, name), "wb").close()
    return directory


def test_lists_the_shards_in_order(tmp_path):
    directory = touch(tmp_path, [records.shard_name(i, 100) for i in (10, 2, 1, 100)], "test")
    got = shards.list_shards(str(tmp_path), DATASET, "test")
    assert got == [os.path.join(directory, n)
                   for n in ("001-of-100.tfrecord", "002-of-100.tfrecord", "010-of-100.tfrecord",
                             "100-of-100.tfrecord")]


def test_a_partial_download_is_read_with_a_warning(tmp_path, caplog):
    touch(tmp_path, [records.shard_name(i, 900) for i in (1, 2, 3)] + ["notes.txt"])
    with caplog.at_level(py_logging.WARNING):
        got = shards.list_shards(str(tmp_path), DATASET, "train")
    assert [os.path.basename(p) for p in got] == [
        "001-of-900.tfrecord", "002-of-900.tfrecord", "003-of-900.tfrecord"]
    assert "3 of 900 shards present" in caplog.text


def test_a_smaller_consistent_count_is_accepted_with_a_warning(tmp_path, caplog):
    touch(tmp_path, ["1-of-4.tfrecord", "2-of-4.tfrecord", "4-of-4.tfrecord"])
    with caplog.at_level(py_logging.WARNING):
        got = shards.list_shards(str(tmp_path), DATASET, "train")
    assert [os.path.basename(p) for p in got] == [
        "1-of-4.tfrecord", "2-of-4.tfrecord", "4-of-4.tfrecord"]
    assert "named '-of-4'" in caplog.text and "has 900" in caplog.text
    assert "only 3 of the 4 shards" in caplog.text


def test_missing_data_says_where_what_and_how_to_get_it(tmp_path):
    with pytest.raises(shards.DataNotFoundError) as raised:
        shards.list_shards(str(tmp_path), DATASET, "train")
    message = str(raised.value)
    assert isinstance(raised.value, FileNotFoundError)
    assert os.path.join(str(tmp_path), DATASET, "train") in message
    assert "does not exist" in message
    assert "001-of-900.tfrecord" in message
    assert f"python data/download.py --dataset {DATASET} --data_dir {tmp_path}" in message
    assert "--data_dir data/sample" in message


def test_a_directory_without_shards_counts_the_other_files(tmp_path):
    touch(tmp_path, ["001-of-900.tfrecord.gz", "README"])
    with pytest.raises(shards.DataNotFoundError, match="2 other files.*001-of-900.tfrecord"):
        shards.list_shards(str(tmp_path), DATASET, "train")


def test_mixed_shard_counts_are_an_error(tmp_path):
    touch(tmp_path, ["1-of-4.tfrecord", "001-of-900.tfrecord"])
    with pytest.raises(shards.ShardNamingError, match="mix different totals: 1 of 4.*1 of 900"):
        shards.list_shards(str(tmp_path), DATASET, "train")


def test_unknown_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        shards.list_shards(str(tmp_path), DATASET, "validation")
