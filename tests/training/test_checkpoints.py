import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints, schedules
from gqn_tf.training.step import TrainStep

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _train_tiny_run(model_dir, make_batch, steps, save_at):
    """Trains a tiny model `steps` steps in the run directory `model_dir`, saving a checkpoint
    after each step in `save_at` (numbered by its step). Returns the model, its batch, the
    saved prefixes and each saved checkpoint's weights."""
    config = get_preset("tiny", representation="pool")
    model, optimizer = GQN(config), schedules.make_optimizer()
    step = TrainStep(model, optimizer, 2, seed=1)
    batch = make_batch(batch_size=2, context_size=2)
    checkpoints.write_run_config(model_dir, config, dataset="shepard_metzler_7_parts")
    manager = checkpoints.checkpoint_manager(checkpoints.make_checkpoint(model, optimizer),
                                             model_dir, max_to_keep=max(5, len(save_at)))
    prefixes, weights = [], []
    for number in range(1, steps + 1):
        step(batch)
        if number in save_at:
            prefixes.append(manager.save(checkpoint_number=number))
            weights.append([v.numpy().copy() for v in model.weights])
    return model, batch, prefixes, weights


@pytest.fixture
def trained_run(tmp_path, make_batch):
    model, batch, (prefix,), _ = _train_tiny_run(tmp_path, make_batch, steps=3, save_at=(3,))
    return tmp_path, prefix, model, batch


def _same_outputs(a, b, batch):
    args = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    np.testing.assert_array_equal(a.generate(*args, seed=3), b.generate(*args, seed=3))


def test_load_model_from_run_directory_and_prefix(trained_run):
    model_dir, prefix, model, batch = trained_run
    for source in (model_dir, prefix):
        loaded, info = checkpoints.load_model(str(source))
        # A checkpoint written without the trainer holds no compute seconds.
        assert info == {"source": prefix, "step": 3, "compute_seconds": None}
        assert loaded.gqn_config == model.gqn_config
        _same_outputs(model, loaded, batch)


def test_load_model_from_keras_file(trained_run):
    model_dir, _, model, batch = trained_run
    path = str(model_dir / "model.keras")
    model.save(path)
    loaded, info = checkpoints.load_model(path)
    assert info["step"] is None
    _same_outputs(model, loaded, batch)


def test_missing_sources_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run_config.json"):
        checkpoints.read_run_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No checkpoint in .*train first"):
        checkpoints.load_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No such .keras file"):
        checkpoints.load_model(str(tmp_path / "nope.keras"))
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        checkpoints.load_model(str(tmp_path / "nope"))


@pytest.fixture
def run_of_three_checkpoints(tmp_path, make_batch):
    """A tiny run directory that kept its checkpoints of steps 1, 2 and 3, and each one's
    weights."""
    _, _, _, weights = _train_tiny_run(tmp_path, make_batch, steps=3, save_at=(1, 2, 3))
    return tmp_path, weights


def test_averaging_the_latest_checkpoints_gives_each_weights_mean(run_of_three_checkpoints):
    model_dir, weights = run_of_three_checkpoints
    assert [p.rsplit("-", 1)[-1] for p in checkpoints.checkpoint_prefixes(str(model_dir))] == [
        "1", "2", "3"]
    for count in (2, 3):
        model, info = checkpoints.load_averaged_model(str(model_dir), count)
        assert info["step"] == 3 and info["averaged_steps"] == [1, 2, 3][-count:]
        assert info["source"].endswith("ckpt-3")
        for i, variable in enumerate(model.weights):
            expected = np.mean([w[i] for w in weights[-count:]], axis=0)
            np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, atol=1e-7)
        # The iterates differ, so the mean is none of them.
        assert any(not np.array_equal(v.numpy(), w) for v, w in zip(model.weights, weights[-1]))


def test_averaging_more_checkpoints_than_kept_is_explained(run_of_three_checkpoints, tmp_path):
    model_dir, _ = run_of_three_checkpoints
    with pytest.raises(ValueError, match="keeps 3 checkpoint.*--keep_checkpoints 4"):
        checkpoints.load_averaged_model(str(model_dir), 4)
    with pytest.raises(ValueError, match="not a run directory"):
        checkpoints.load_averaged_model(str(model_dir / "checkpoints" / "ckpt-3"), 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No checkpoint in"):
        checkpoints.load_averaged_model(str(empty), 2)


def test_save_compact_cli_averages_and_records_the_steps(run_of_three_checkpoints, tmp_path):
    model_dir, weights = run_of_three_checkpoints
    out = tmp_path / "averaged.npz"
    command = [sys.executable, "export/save_compact.py", "--model_dir", str(model_dir),
               "--out", str(out)]
    done = subprocess.run(command + ["--average", "2"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "steps [2, 3]" in done.stdout
    model, header = checkpoints.load_compact(str(out))
    assert header["metadata"]["averaged_steps"] == [2, 3] and header["metadata"]["step"] == 3
    for i, variable in enumerate(model.weights):
        expected = np.float16((weights[1][i] + weights[2][i]) / 2)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-3, atol=1e-6)
    refused = subprocess.run(command + ["--average", "5"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "--keep_checkpoints 5" in refused.stderr.strip().splitlines()[-1]
