"""Tests of gqn_tf/data/tfds.py and tfds_register.py on the bundled sample (original format).

The sample is registered into tmp_path (links point at data/sample, which is never written);
tests that move or damage files work on copies.
"""

import hashlib
import json
import logging as py_logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from gqn_tf.data import datasets, pipeline, records, shards
from gqn_tf.data import tfds as gqn_tfds
from gqn_tf.data import tfds_register

DATASET = "shepard_metzler_7_parts"
INFO = datasets.get_dataset_info(DATASET)
S = INFO.sequence_size
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def snapshot(root):
    """{path: (mtime_ns, sha256)} of every file under `root`."""
    result = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                result[path] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return result


def raw_records(root, split):
    """The serialized records of each shard of `split`, in shard order."""
    return [[r.numpy() for r in tf.data.TFRecordDataset(path)]
            for path in shards.list_shards(root, DATASET, split)]


def lstat_all(directory):
    return {name: os.lstat(os.path.join(directory, name)).st_mtime_ns
            for name in os.listdir(directory)}


@pytest.fixture(scope="module")
def registered(sample_dir, tmp_path_factory):
    """(tfds_dir, Registration, snapshot of the sample before registering)."""
    before = snapshot(sample_dir / DATASET)
    tfds_dir = tmp_path_factory.mktemp("tfds")
    result = tfds_register.register(DATASET, sample_dir, tfds_dir)
    return str(tfds_dir), result, before


def copy_split(sample_dir, root, split, indices=None):
    """Copies shards `indices` (1-based, default all) of `split` of the sample under `root`."""
    sources = shards.list_shards(sample_dir, DATASET, split)
    target = records.split_dir(str(root), DATASET, split)
    os.makedirs(target, exist_ok=True)
    for index, source in enumerate(sources, 1):
        if indices is None or index in indices:
            shutil.copy2(source, target)
    return target


def test_tfds_load_returns_the_original_scenes(registered, sample_dir):
    tfds_dir, _, _ = registered
    ds, info = tfds.load(DATASET, split="train", data_dir=tfds_dir, with_info=True,
                         shuffle_files=False)
    assert info.features["frames"].shape == (S, 64, 64, 3)
    assert info.features["cameras"].shape == (S * 5,)
    scene = next(iter(ds))
    assert scene["frames"].shape == (S, 64, 64, 3) and scene["frames"].dtype == tf.uint8
    assert scene["cameras"].shape == (S * 5,) and scene["cameras"].dtype == tf.float32
    first = tf.io.parse_single_example(raw_records(sample_dir, "train")[0][0],
                                       records.feature_spec(S))
    expected = tf.stack([tf.io.decode_jpeg(frame, channels=3) for frame in first["frames"]])
    np.testing.assert_array_equal(scene["frames"], expected)
    np.testing.assert_array_equal(scene["cameras"], first["cameras"])


def test_split_sizes_match_record_counts(registered, sample_dir):
    tfds_dir, result, _ = registered
    info = tfds.builder(DATASET, data_dir=tfds_dir).info
    for split in ("train", "test"):
        counts = [len(shard) for shard in raw_records(sample_dir, split)]
        assert info.splits[split].shard_lengths == counts
        assert info.splits[split].num_examples == sum(counts) == result.split_sizes[split]


def test_split_slicing_reads_the_slice(registered, sample_dir):
    tfds_dir, _, _ = registered
    half = tfds.load(DATASET, split="test[:50%]", data_dir=tfds_dir, shuffle_files=False)
    assert sum(1 for _ in half) == 40
    # Sliced inside shards: our reader keeps exactly the records TFDS would.
    records_ds = gqn_tfds.read_split(DATASET, tfds_dir, "train[30:50]", shuffle=False)
    got = sorted(r["record"].numpy() for r in records_ds)
    train = raw_records(sample_dir, "train")
    assert got == sorted(train[0][30:40] + train[1][:10])


def test_register_again_changes_nothing(registered, sample_dir):
    tfds_dir, result, _ = registered
    before = lstat_all(result.version_dir)
    again = tfds_register.register(DATASET, sample_dir, tfds_dir)
    assert not again.changed and again.actions == [] and not again.metadata_written
    assert lstat_all(result.version_dir) == before
    assert again.shard_lengths == result.shard_lengths


def test_original_files_are_untouched(registered, sample_dir):
    _, _, before = registered
    assert snapshot(sample_dir / DATASET) == before


@pytest.mark.parametrize("shuffle", [False, True])
def test_tfds_pipeline_equals_raw_pipeline(registered, sample_dir, shuffle):
    tfds_dir, _, _ = registered
    kwargs = dict(split="train", batch_size=16, context_size=None, seed=7, shuffle=shuffle,
                  repeat=False)
    raw = list(pipeline.make_dataset(DATASET, sample_dir, **kwargs))
    via_tfds = list(gqn_tfds.make_tfds_dataset(DATASET, tfds_dir, **kwargs))
    assert len(raw) == len(via_tfds) == 10
    for a, b in zip(raw, via_tfds):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_tfds_pipeline_on_a_slice(registered):
    tfds_dir, _, _ = registered
    batches = list(gqn_tfds.make_tfds_dataset(DATASET, tfds_dir, "test[:25%]", batch_size=4,
                                              context_size=2, seed=1, repeat=False))
    assert len(batches) == 5
    assert batches[0]["context_frames"].shape == (4, 2, 64, 64, 3)


def test_command_line_reports_up_to_date(registered, sample_dir):
    tfds_dir, _, _ = registered
    out = subprocess.run(
        [sys.executable, "-m", "gqn_tf.data.tfds_register", f"--dataset={DATASET}",
         f"--data_dir={sample_dir}", f"--tfds_dir={tfds_dir}"],
        capture_output=True, text=True, check=True)
    assert "train 160 scenes in 4 shards, test 80 scenes in 2 shards; already up to date" \
        in out.stdout
    # TensorFlow's and TFDS's start-up and deprecation lines stay quiet (only the sample's
    # shard-count warnings, which are ours, reach stderr).
    for noise in ("cuInit", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard",
                  "deprecated"):
        assert noise not in out.stderr, out.stderr


def test_unknown_dataset_and_missing_data_are_errors(tmp_path, sample_dir):
    with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
        tfds_register.register("nope", sample_dir, tmp_path)
    with pytest.raises(shards.DataNotFoundError, match="does not exist"):
        tfds_register.register(DATASET, tmp_path / "missing", tmp_path / "tfds")
    with pytest.raises(gqn_tfds.NotRegisteredError, match="tfds_register"):
        gqn_tfds.make_tfds_dataset(DATASET, tmp_path / "tfds", "train", batch_size=2)
    assert not os.path.exists(tmp_path / "tfds")


def test_conflicting_link_is_an_error_unless_forced(tmp_path, sample_dir):
    tfds_dir = tmp_path / "tfds"
    result = tfds_register.register(DATASET, sample_dir, tfds_dir)
    link = os.path.join(result.version_dir, f"{DATASET}-test.tfrecord-00000-of-00002")
    wrong = shards.list_shards(sample_dir, DATASET, "test")[1]
    os.remove(link)
    os.symlink(wrong, link)
    with pytest.raises(tfds_register.RegistrationConflictError, match="--force"):
        tfds_register.register(DATASET, sample_dir, tfds_dir)
    assert os.path.samefile(link, wrong)  # nothing changed
    fixed = tfds_register.register(DATASET, sample_dir, tfds_dir, force=True)
    assert [a[0] for a in fixed.actions] == ["relink"]
    assert os.path.samefile(link, shards.list_shards(sample_dir, DATASET, "test")[0])
    # A regular file with other content is never overwritten, even with force.
    os.remove(link)
    with open(link, "wb") as f:
        f.write(b"not the shard")
    with pytest.raises(tfds_register.RegistrationConflictError, match="never overwritten"):
        tfds_register.register(DATASET, sample_dir, tfds_dir, force=True)


def test_partial_download_registers_present_shards(tmp_path, sample_dir, caplog):
    copy_split(sample_dir, tmp_path, "train", indices={1, 3})
    with caplog.at_level(py_logging.WARNING):
        result = tfds_register.register(DATASET, tmp_path, tmp_path / "tfds")
    assert "2 of 4 shards present" in caplog.text
    assert result.split_sizes == {"train": 80}
    ds = tfds.load(DATASET, split="train", data_dir=tmp_path / "tfds")
    assert sum(1 for _ in ds) == 80
    # When the download completes, the old numbering is a leftover that --force removes.
    copy_split(sample_dir, tmp_path, "train")
    with pytest.raises(tfds_register.RegistrationConflictError, match="earlier registration"):
        tfds_register.register(DATASET, tmp_path, tmp_path / "tfds")
    result = tfds_register.register(DATASET, tmp_path, tmp_path / "tfds", force=True)
    assert result.split_sizes == {"train": 160}


def test_truncated_shard_is_reported_before_any_change(tmp_path, sample_dir):
    directory = copy_split(sample_dir, tmp_path, "test")
    path = os.path.join(directory, "2-of-2.tfrecord")
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(tfds_register.TruncatedShardError, match="2-of-2.tfrecord is truncated"):
        tfds_register.register(DATASET, tmp_path, tmp_path / "tfds")
    assert not os.path.exists(tmp_path / "tfds")


def test_move_keeps_both_readers_and_restores(tmp_path, sample_dir):
    directory = copy_split(sample_dir, tmp_path, "test")
    originals = {name: open(os.path.join(directory, name), "rb").read()
                 for name in os.listdir(directory)}
    tfds_dir = tmp_path / "tfds"
    result = tfds_register.register(DATASET, tmp_path, tfds_dir, move=True)
    assert [a[0] for a in result.actions] == ["move", "move"]
    for name in originals:
        assert os.path.islink(os.path.join(directory, name))
    assert sum(1 for _ in tfds.load(DATASET, split="test", data_dir=tfds_dir)) == 80
    assert sum(len(r) for r in raw_records(tmp_path, "test")) == 80
    assert not tfds_register.register(DATASET, tmp_path, tfds_dir, move=True).changed
    restored = tfds_register.restore_moved(DATASET, tfds_dir)
    assert len(restored) == 2
    for name, content in originals.items():
        path = os.path.join(directory, name)
        assert not os.path.islink(path) and open(path, "rb").read() == content
    assert not tfds_register.register(DATASET, tmp_path, tfds_dir).changed


def _train_two_steps(model_dir, *source):
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--dataset", DATASET,
               "--preset", "tiny", "--batch_size", "4", "--max_context_size", "3",
               "--max_steps", "2", "--log_every", "1", "--image_every", "0",
               "--model_dir", str(model_dir), *source]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", "ckpt-2"))


def test_train_py_reads_a_registered_dataset_through_tfds(registered, sample_dir, tmp_path):
    tfds_dir, _, _ = registered
    held_out = ("--eval_every", "2", "--eval_scenes", "4", "--eval_batch_size", "2")
    through_tfds = _train_two_steps(tmp_path / "tfds", "--tfds_dir", tfds_dir,
                                    "--data_dir", str(tmp_path / "nothing_here"), *held_out)
    from_shards = _train_two_steps(tmp_path / "raw", "--data_dir", str(sample_dir), *held_out)
    # Same records in the same seeded order: the same two updates, weight for weight.
    names = [name for name in from_shards.get_variable_to_shape_map()
             if name.startswith(("model/", "optimizer/")) and "VARIABLE_VALUE" in name]
    assert len(names) > 20
    for name in names:
        np.testing.assert_array_equal(through_tfds.get_tensor(name),
                                      from_shards.get_tensor(name), err_msg=name)
    run = json.loads((tmp_path / "tfds" / "run_config.json").read_text())
    assert run["train"]["tfds_dir"] == tfds_dir
    # The held-out scenes come from the registration's test and train splits: the same figures.
    from gqn_tf.evaluation import held_out as held_outs
    from gqn_tf.training import compute

    lines = {name: held_outs.read_metrics(tmp_path / name) for name in ("tfds", "raw")}
    assert [(e["step"], e["split"]) for e in lines["tfds"]] == [
        (step, split) for step in (0, 2) for split in ("test", "train")]
    for a, b in zip(lines["tfds"], lines["raw"]):
        for name in ("neg_elbo_nats", "generation_mse", "prior_mean_mse", "mean_image_mse"):
            assert a[name] == pytest.approx(b[name], rel=1e-6), name
        assert set(compute.COMPUTE) <= set(a)


def test_train_py_names_an_unregistered_tfds_dir(tmp_path):
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--dataset", DATASET,
               "--preset", "tiny", "--max_steps", "1", "--tfds_dir", str(tmp_path / "empty"),
               "--model_dir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No TFDS metadata" in lines[0] and "tfds_register" in lines[0]
    assert "Traceback" not in result.stderr
