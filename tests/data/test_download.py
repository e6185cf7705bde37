import os
import stat

import pytest

from gqn_tf.data import download, records

DATASET = "shepard_metzler_7_parts"
URL = "gs://gqn-dataset/shepard_metzler_7_parts"


def test_first_n_shards_per_split_are_named_from_the_table(tmp_path):
    commands = download.download(DATASET, str(tmp_path), num_shards=2, dry_run=True)
    train, test = commands
    assert train.argv == ("gsutil", "-m", "cp", "-n", "-I", str(tmp_path / DATASET / "train"))
    assert train.urls == (f"{URL}/train/001-of-900.tfrecord", f"{URL}/train/002-of-900.tfrecord")
    assert test.urls == (f"{URL}/test/001-of-100.tfrecord", f"{URL}/test/002-of-100.tfrecord")
    assert test.destination == str(tmp_path / DATASET / "test")


def test_whole_dataset_copies_every_shard(tmp_path):
    (command,) = download.plan("rooms_ring_camera", str(tmp_path), splits=["train"])
    assert len(command.urls) == 2160
    assert command.urls[0].endswith("/rooms_ring_camera/train/0001-of-2160.tfrecord")
    assert command.urls[-1].endswith("/rooms_ring_camera/train/2160-of-2160.tfrecord")


def test_num_shards_is_capped_by_the_split(tmp_path):
    train, test = download.plan(DATASET, str(tmp_path), num_shards=150)
    assert (len(train.urls), len(test.urls)) == (150, 100)


def test_shards_already_present_are_skipped(tmp_path):
    train_dir = tmp_path / DATASET / "train"
    train_dir.mkdir(parents=True)
    for index in (1, 3):
        (train_dir / records.shard_name(index, 900)).write_bytes(b"x")
    (train_dir / "002-of-900.tfrecord_.gstmp").write_bytes(b"partial")  # gsutil's temp file
    (command,) = download.plan(DATASET, str(tmp_path), splits=["train"], num_shards=3)
    assert command.urls == (f"{URL}/train/002-of-900.tfrecord",)
    (train_dir / "002-of-900.tfrecord").write_bytes(b"x")
    assert download.plan(DATASET, str(tmp_path), splits=["train"], num_shards=3) == []


def test_dry_run_prints_a_pasteable_shell_command(tmp_path):
    (command,) = download.plan(DATASET, str(tmp_path / "my dir"), splits=["test"], num_shards=1)
    assert command.shell() == (
        f"gsutil -m cp -n -I '{tmp_path}/my dir/{DATASET}/test' <<'EOF'\n"
        f"{URL}/test/001-of-100.tfrecord\nEOF")


def test_missing_gsutil_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(download.GsutilNotFoundError, match="Google Cloud SDK"):
        download.download(DATASET, str(tmp_path), num_shards=1)
    assert download.download(DATASET, str(tmp_path), num_shards=1, dry_run=True)  # no gsutil needed
    assert not (tmp_path / DATASET).exists()


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset"):
        download.plan("shepard_metzler", str(tmp_path))
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        download.plan(DATASET, str(tmp_path), splits=["valid"])
    with pytest.raises(ValueError, match="at least 1"):
        download.plan(DATASET, str(tmp_path), num_shards=0)


def test_copy_feeds_the_urls_to_gsutil_and_resumes(tmp_path, monkeypatch):
    """A stand-in `gsutil` on PATH records its arguments and creates the files it is given."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fake = bin_dir / "gsutil"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'for last; do :; done\n'
        'while read -r url; do echo data > "$last/${url##*/}"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    data_dir = tmp_path / "data"

    download.download(DATASET, str(data_dir), splits=["test"], num_shards=2)
    assert sorted(os.listdir(data_dir / DATASET / "test")) == ["001-of-100.tfrecord",
                                                               "002-of-100.tfrecord"]
    assert log.read_text() == f"-m cp -n -I {data_dir / DATASET / 'test'}\n"
    download.download(DATASET, str(data_dir), splits=["test"], num_shards=3)
    assert sorted(os.listdir(data_dir / DATASET / "test"))[-1] == "003-of-100.tfrecord"
    assert len(log.read_text().splitlines()) == 2
    assert download.download(DATASET, str(data_dir), splits=["test"], num_shards=3) == []
