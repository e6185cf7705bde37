import numpy as np
import pytest

from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints, schedules
from gqn_tf.training.step import TrainStep


@pytest.fixture
def trained_run(tmp_path, make_batch):
    config = get_preset("tiny", representation="pool")
    model, optimizer = GQN(config), schedules.make_optimizer()
    step = TrainStep(model, optimizer, 2, seed=1)
    batch = make_batch(batch_size=2, context_size=2)
    for _ in range(3):
        step(batch)
    checkpoints.write_run_config(tmp_path, config, dataset="shepard_metzler_7_parts")
    manager = checkpoints.checkpoint_manager(checkpoints.make_checkpoint(model, optimizer), tmp_path)
    prefix = manager.save(checkpoint_number=3)
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
