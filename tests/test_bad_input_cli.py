"""What a user sees when the input is bad: one line naming it and what to do, an exit code, no
traceback or help dump, and nothing lost. Runs train.py and evaluate.py as subprocesses on a
copy of the bundled sample whose scene 3 has JPEGs with intact markers and scrambled bodies."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import records
from gqn_tf.training import checkpoints

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DATASET = "shepard_metzler_7_parts"
TINY_RUN = ["--dataset", DATASET, "--preset", "tiny", "--batch_size", "4", "--log_every", "5",
            "--image_every", "0", "--max_context_size", "3"]
# The C++ start-up lines TensorFlow writes before its logging is set up.
TF_NOISE = ("absl::InitializeLog", "cudart_stub", "cuda_platform", "cpu_feature_guard")


def _run(script, *args, timeout=180):
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _last_line(text):
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def damaged_root(sample_dir, tmp_path_factory):
    """The sample's train split with every frame of record 3 of 1-of-4 scrambled in its body
    (400 random bytes in the middle, markers kept), and its test split as it is."""
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        source = sample_dir / DATASET / split
        target = root / DATASET / split
        target.mkdir(parents=True)
        for name in sorted(os.listdir(source)):
            with tf.io.TFRecordWriter(str(target / name)) as writer:
                for index, raw in enumerate(tf.data.TFRecordDataset(str(source / name))):
                    raw = raw.numpy()
                    if split == "train" and name.startswith("1-") and index == 3:
                        example = tf.train.Example.FromString(raw)
                        frames = []
                        for jpeg in example.features.feature["frames"].bytes_list.value:
                            body = bytearray(jpeg)
                            middle = len(body) // 2
                            body[middle - 200:middle + 200] = rng.integers(
                                0, 256, 400, dtype=np.uint8).tobytes()
                            frames.append(bytes(body))
                        cameras = np.reshape(
                            example.features.feature["cameras"].float_list.value, (-1, 5))
                        raw = records.serialize_scene(frames, cameras)
                    writer.write(raw)
    return root


def test_a_damaged_jpeg_body_is_named_and_the_steps_are_saved(damaged_root, tmp_path):
    run = tmp_path / "run"
    result = _run("train.py", *TINY_RUN, "--data_dir", str(damaged_root), "--model_dir",
                  str(run), "--max_steps", "400", "--checkpoint_every", "1000")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = _last_line(result.stderr)
    assert line.startswith("train.py: record 3 of shard ") and "1-of-4.tfrecord: frame 0 " \
        "does not decode as a JPEG" in line
    assert "(records and frames count from 0)" in line and "--skip_bad_records" in line
    # The steps trained before the bad batch were saved, and the same command resumes.
    saved = checkpoints.latest_checkpoint(str(run))
    step = int(saved.rsplit("-", 1)[1])
    assert 0 < step < 400
    resumed = _run("train.py", *TINY_RUN, "--data_dir", str(damaged_root), "--model_dir",
                   str(run), "--max_steps", str(step + 2), "--checkpoint_every", "1000")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed from {saved} at step {step}" in resumed.stderr
    assert checkpoints.latest_checkpoint(str(run)).endswith(f"ckpt-{step + 2}")


def test_skip_bad_records_trains_through_and_counts_one(damaged_root, tmp_path):
    result = _run("train.py", *TINY_RUN, "--data_dir", str(damaged_root), "--model_dir",
                  str(tmp_path), "--max_steps", "60", "--skip_bad_records",
                  "--checkpoint_every", "1000")
    assert result.returncode == 0, result.stderr
    assert "1 bad records skipped" in result.stderr
    assert result.stderr.count("Skipping bad input: record 3 of shard") == 1
    assert "frame 0 does not decode as a JPEG" in result.stderr


def test_evaluate_names_the_bad_record_and_can_skip_it(damaged_root, tiny_trained_run, tmp_path):
    common = ["--dataset", DATASET, "--data_dir", str(damaged_root), "--split", "train",
              "--model_dir", str(tiny_trained_run), "--num_scenes", "8", "--max_context", "2",
              "--noprogress", "--mean_image_scenes", "0", "--latent_samples", "0"]
    failed = _run("evaluate.py", *common, "--output_dir", str(tmp_path / "a"))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "evaluate.py: record 3 of shard" in _last_line(failed.stderr)
    skipped = _run("evaluate.py", *common, "--output_dir", str(tmp_path / "b"),
                   "--skip_bad_records")
    assert skipped.returncode == 0, skipped.stderr
    assert "1 bad records skipped" in skipped.stdout


def test_a_truncated_shard_is_one_line(sample_dir, tmp_path):
    target = tmp_path / DATASET / "train"
    target.mkdir(parents=True)
    for name in os.listdir(sample_dir / DATASET / "train"):
        data = (sample_dir / DATASET / "train" / name).read_bytes()
        (target / name).write_bytes(data[:-100] if name.startswith("2-") else data)
    result = _run("train.py", *TINY_RUN, "--data_dir", str(tmp_path), "--model_dir",
                  str(tmp_path / "run"), "--max_steps", "200")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "2-of-4.tfrecord is truncated or corrupted" in _last_line(result.stderr)


@pytest.mark.parametrize("args, message", [
    (["--context_size", "15"], "train.py: context_size 15 must be smaller than the 15 views"),
    (["--model", "layers=2"], "train.py: --model 'layers=2': expected NAME=VALUE"),
    (["--model", "image_size=32"], "train.py: The model is built for 32x32 images but the "
                                   "frames of shepard_metzler_7_parts are 64x64: pass "
                                   "--frame_size 32"),
    (["--lr_schedule", "0:1e-3,100:0"], "train.py: lr_schedule: Schedule point '100:0': the "
                                        "value must be positive."),
    # the bundled model is the small preset, not the tiny one asked for
    (["--init_from", str(REPO_ROOT / "pretrained" / "gqn_sm7_32.npz")],
     f"train.py: --init_from {REPO_ROOT / 'pretrained' / 'gqn_sm7_32.npz'} holds another model "
     f"config"),
])
def test_user_errors_are_one_line_without_help(sample_dir, tmp_path, args, message):
    result = _run("train.py", *TINY_RUN, "--data_dir", str(sample_dir), "--model_dir",
                  str(tmp_path), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr and "--max_steps" not in result.stderr  # no help


def test_a_file_as_data_dir_is_named_as_a_file(tmp_path):
    result = _run("train.py", *TINY_RUN, "--data_dir", str(REPO_ROOT / "README.md"),
                  "--model_dir", str(tmp_path))
    assert result.returncode == 1
    assert "README.md is a file, not a directory" in result.stderr
    assert result.stderr.count("No shepard_metzler_7_parts train shards") == 1


def test_a_failed_first_start_does_not_block_the_corrected_one(sample_dir, tmp_path):
    bad = _run("train.py", *TINY_RUN, "--data_dir", str(sample_dir), "--model_dir",
               str(tmp_path), "--max_steps", "1", "--model", "hidden_channels=0")
    assert bad.returncode == 2
    (tmp_path / checkpoints.RUN_CONFIG).write_text(
        '{"model": {"image_size": 64, "hidden_channels": 3}}')  # left by an aborted start
    good = _run("train.py", *TINY_RUN, "--data_dir", str(sample_dir), "--model_dir",
                str(tmp_path), "--max_steps", "1")
    assert good.returncode == 0, good.stderr


def test_a_default_run_prints_no_tensorflow_start_up_lines(sample_dir, tmp_path):
    result = _run("train.py", *TINY_RUN, "--data_dir", str(sample_dir), "--model_dir",
                  str(tmp_path), "--max_steps", "2")
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines()
                if any(noise in line for noise in TF_NOISE)], result.stderr
    assert "Sharding callback" not in result.stderr and "MirroredStrategy" not in result.stderr
