import dataclasses
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gqn_tf.data import shards
from gqn_tf.model import GQN, get_preset
from gqn_tf.training import checkpoints, loop, schedules

TINY = get_preset("tiny")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config(sample_dir, model_dir, **overrides):
    fields = dict(dataset="shepard_metzler_7_parts", data_dir=str(sample_dir),
                  model_dir=str(model_dir), max_steps=3, batch_size=4, max_context_size=3,
                  seed=7, log_every=1, image_every=0, checkpoint_every=100,
                  shuffle_buffer_size=50)
    return loop.TrainConfig(**{**fields, **overrides})


def _one_device():
    return tf.distribute.MirroredStrategy(["/cpu:0"])


def _optimizer_state(model_dir):
    """Model weights and Adam's iteration count and slots of a run's latest checkpoint."""
    model = GQN(TINY)
    optimizer = schedules.make_optimizer()
    optimizer.build(model.trainable_variables)
    checkpoints.make_checkpoint(model, optimizer).read(
        checkpoints.latest_checkpoint(model_dir)).expect_partial()
    return model, optimizer


def test_two_replicas_make_the_same_update_as_one_device(sample_dir, tmp_path):
    results = {}
    for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
        config = _config(sample_dir, tmp_path / name, max_steps=2)
        results[name] = loop.train(TINY, config, strategy=tf.distribute.MirroredStrategy(devices))
    np.testing.assert_allclose(results["one"].metrics["loss"], results["two"].metrics["loss"],
                               rtol=1e-5)
    one, _ = checkpoints.load_model(str(tmp_path / "one"))
    two, _ = checkpoints.load_model(str(tmp_path / "two"))
    # Adam divides each gradient by its running RMS, so for a weight whose gradient is near
    # zero the all-reduce's different summation order can move it by a few percent of one
    # step (the learning rate is 5e-4): hence atol, far below what a wrong update gives.
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=3e-5)


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(sample_dir, tmp_path):
    straight = loop.train(TINY, _config(sample_dir, tmp_path / "straight", max_steps=4),
                          strategy=_one_device())
    first = loop.train(TINY, _config(sample_dir, tmp_path / "resumed", max_steps=2),
                       strategy=_one_device())
    assert first.step == 2 and first.checkpoint.endswith("ckpt-2")
    resumed = loop.train(TINY, _config(sample_dir, tmp_path / "resumed", max_steps=4),
                         strategy=_one_device())
    assert resumed.step == straight.step == 4
    for name in ("loss", "sigma", "learning_rate"):
        assert resumed.metrics[name] == pytest.approx(straight.metrics[name], rel=1e-6), name
    assert straight.metrics["sigma"] < schedules.ScheduleConfig().sigma_initial  # annealing
    a_model, a_optimizer = _optimizer_state(tmp_path / "straight")
    b_model, b_optimizer = _optimizer_state(tmp_path / "resumed")
    assert int(a_optimizer.iterations.numpy()) == int(b_optimizer.iterations.numpy()) == 4
    for a, b in zip(a_model.weights + a_optimizer.variables,
                    b_model.weights + b_optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_run_config_records_model_dataset_and_training_flags(sample_dir, tmp_path):
    config = _config(sample_dir, tmp_path, max_steps=1)
    loop.train(TINY, config, strategy=_one_device())
    saved = checkpoints.read_run_config(str(tmp_path))
    assert saved["model"] == TINY.to_dict()
    assert saved["dataset"] == "shepard_metzler_7_parts"
    assert saved["train"] == config.to_dict()
    assert saved["schedule"] == dataclasses.asdict(schedules.ScheduleConfig())
    with pytest.raises(ValueError, match="another model config.*new --model_dir"):
        loop.train(get_preset("tiny", num_layers=3), config, strategy=_one_device())


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(sample_dir, tmp_path):
    # σ anneals to 0 at step 2, so the third update has an infinite NLL.
    schedule = schedules.ScheduleConfig(sigma_final=0.0, sigma_steps=2)
    config = _config(sample_dir, tmp_path, max_steps=5, checkpoint_every=1)
    with pytest.raises(loop.NonFiniteLossError, match=r"at step 3.*ckpt-2.*learning rate"):
        loop.train(TINY, config, schedule, strategy=_one_device())
    assert checkpoints.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    model, info = checkpoints.load_model(str(tmp_path))
    assert info["step"] == 2
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)


def test_bad_configs_fail_before_any_work(sample_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
        loop.train(TINY, _config(sample_dir, tmp_path, dataset="nope"), strategy=_one_device())
    with pytest.raises(ValueError, match="context_size 15 must be smaller than the 15 views"):
        loop.train(TINY, _config(sample_dir, tmp_path, context_size=15),
                   strategy=_one_device())
    with pytest.raises(ValueError, match="does not split evenly over 2 replicas"):
        loop.check_config(_config(sample_dir, tmp_path, batch_size=3), num_replicas=2)
    with pytest.raises(ValueError, match="strategy must be one of"):
        loop.check_config(_config(sample_dir, tmp_path, strategy="ring"))
    with pytest.raises(ValueError, match="worker_timeout must be positive, got 0"):
        loop.check_config(_config(sample_dir, tmp_path, worker_timeout=0))
    with pytest.raises(shards.DataNotFoundError, match="--data_dir data/sample"):
        loop.train(TINY, _config(tmp_path / "empty", tmp_path), strategy=_one_device())
    assert not (tmp_path / "checkpoints").exists()


def test_distribute_batch_gives_each_replica_consecutive_rows(make_batch):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    batch = {k: tf.constant(v) for k, v in make_batch(batch_size=4, context_size=1).items()}
    local = strategy.experimental_local_results(loop.distribute_batch(strategy, batch, 4))
    for replica, values in enumerate(local):
        for name, value in values.items():
            np.testing.assert_array_equal(value, batch[name][2 * replica:2 * replica + 2])


def test_resume_with_another_batch_size_restarts_only_the_input(sample_dir, tmp_path):
    loop.train(TINY, _config(sample_dir, tmp_path, max_steps=1), strategy=_one_device())
    resumed = loop.train(TINY, _config(sample_dir, tmp_path, max_steps=2, batch_size=2),
                         strategy=_one_device())
    assert resumed.step == 2 and np.isfinite(resumed.metrics["loss"])
    assert checkpoints.read_run_config(str(tmp_path))["train"]["batch_size"] == 2


def test_init_from_starts_a_new_run_from_the_weights_and_step_of_another(sample_dir, tmp_path):
    loop.train(TINY, _config(sample_dir, tmp_path / "first", max_steps=2), strategy=_one_device())
    compact = checkpoints.save_compact(
        checkpoints.load_model(str(tmp_path / "first"))[0], str(tmp_path / "first.npz"),
        metadata={"step": 2})
    for name, source in (("from_run", str(tmp_path / "first")), ("from_compact", compact)):
        model_dir = tmp_path / name
        # max_steps 2: no update, so the saved run holds exactly the weights it started from.
        start = loop.train(TINY, _config(sample_dir, model_dir, max_steps=2, init_from=source),
                           strategy=_one_device())
        assert start.step == 2 and start.checkpoint.endswith("ckpt-2")
        expected, _ = checkpoints.load_model(source)
        got, info = checkpoints.load_model(str(model_dir))
        assert info["step"] == 2
        for a, b in zip(expected.weights, got.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        # It then trains on, with σ where the schedule is at step 2, not at step 0.
        more = loop.train(TINY, _config(sample_dir, model_dir, max_steps=3, init_from=source),
                          strategy=_one_device())
        assert more.step == 3
        assert more.metrics["sigma"] == pytest.approx(
            float(schedules.pixel_std(2, schedules.ScheduleConfig())), rel=1e-6)


def test_compute_seconds_carry_over_through_a_compact_file_and_init_from(sample_dir, tmp_path):
    """A model card's compute is cumulative: a run started --init_from a compact file counts
    on from the seconds the file records (export/save_compact.py writes them)."""
    loop.train(TINY, _config(sample_dir, tmp_path / "first", max_steps=3), strategy=_one_device())
    _, info = checkpoints.load_model(str(tmp_path / "first"))
    first = info["compute_seconds"]
    assert first["cpu_seconds"] > 0 and first["wall_seconds"] > 0
    result = subprocess.run(
        [sys.executable, "export/save_compact.py", "--model_dir", str(tmp_path / "first"),
         "--out", str(tmp_path / "first.npz")], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    _, compact = checkpoints.load_model(str(tmp_path / "first.npz"))
    assert compact["compute_seconds"] == pytest.approx(first)
    loop.train(TINY, _config(sample_dir, tmp_path / "next", max_steps=4,
                             init_from=str(tmp_path / "first.npz")), strategy=_one_device())
    _, info = checkpoints.load_model(str(tmp_path / "next"))
    assert info["step"] == 4
    assert info["compute_seconds"]["cpu_seconds"] > first["cpu_seconds"]


def test_init_from_a_model_of_another_config_is_refused_before_training(sample_dir, tmp_path):
    loop.train(TINY, _config(sample_dir, tmp_path / "first", max_steps=1), strategy=_one_device())
    for field, value in (("z_channels", TINY.z_channels + 1),
                         ("hidden_channels", TINY.hidden_channels - 1)):
        other = dataclasses.replace(TINY, **{field: value})
        with pytest.raises(ValueError,
                           match=f"{field}.*only hidden_channels and num_layers may grow"):
            loop.train(other, _config(sample_dir, tmp_path / "second",
                                      init_from=str(tmp_path / "first")), strategy=_one_device())
        assert checkpoints.latest_checkpoint(str(tmp_path / "second")) is None


def test_init_from_with_wider_cores_renders_as_before_then_trains_on(sample_dir, tmp_path,
                                                                      make_batch):
    loop.train(TINY, _config(sample_dir, tmp_path / "first", max_steps=2), strategy=_one_device())
    wide = dataclasses.replace(TINY, hidden_channels=2 * TINY.hidden_channels)
    options = dict(init_from=str(tmp_path / "first"))
    # max_steps 2: no update, so the new run holds the grown weights as they started.
    loop.train(wide, _config(sample_dir, tmp_path / "wide", max_steps=2, **options),
               strategy=_one_device())
    source, _ = checkpoints.load_model(str(tmp_path / "first"))
    grown, info = checkpoints.load_model(str(tmp_path / "wide"))
    assert grown.gqn_config == wide and info["step"] == 2
    batch = make_batch(batch_size=2, context_size=2, image_size=TINY.image_size, seed=1)
    frames = (batch["context_frames"], batch["context_cameras"], batch["query_camera"])
    np.testing.assert_allclose(grown.generate(*frames, seed=5), source.generate(*frames, seed=5),
                               atol=1e-6)
    more = loop.train(wide, _config(sample_dir, tmp_path / "wide", max_steps=3, **options),
                      strategy=_one_device())
    assert more.step == 3 and np.isfinite(more.metrics["loss"])
