"""Held-out evaluation during training: curves in TensorBoard and metrics.jsonl, figures equal
to evaluate.py's, training unchanged by it, start-up errors, compute seconds across resumes."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from gqn_tf.evaluation import held_out, loop as evaluation
from gqn_tf.model import get_preset
from gqn_tf.training import checkpoints, loop, schedules

TINY = get_preset("tiny", image_size=32)
DATASET = "shepard_metzler_7_parts"


def _config(sample_dir, model_dir, **overrides):
    fields = dict(dataset=DATASET, data_dir=str(sample_dir), model_dir=str(model_dir),
                  max_steps=24, batch_size=4, max_context_size=3, seed=5, log_every=8,
                  image_every=0, checkpoint_every=100, shuffle_buffer_size=50, frame_size=32,
                  eval_every=8, eval_scenes=12, eval_batch_size=5)
    return loop.TrainConfig(**{**fields, **overrides})


def _train(config):
    return loop.train(TINY, config, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))


def _scalars(logdir):
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={
        event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return {tag: {e.step: float(tf.make_ndarray(e.tensor_proto))
                  for e in accumulator.Tensors(tag)}
            for tag in accumulator.Tags()["tensors"] if tag != "eval/grid"}, accumulator


@pytest.fixture(scope="module")
def run(sample_dir, tmp_path_factory):
    """A tiny run of 24 steps evaluated every 8 steps on 12 scenes of each split."""
    model_dir = tmp_path_factory.mktemp("held_out_run")
    result = _train(_config(sample_dir, model_dir))
    return model_dir, result


# What every evaluation logs to TensorBoard, in both runs eval/test and eval/train.
EXPECTED_TAGS = [f"eval/{name}" for name in (
    "neg_elbo_nats", "kl_nats", "nll_nats", "generation_mse", "sample_mean_mse",
    "prior_mean_mse", "mean_image_mse", "generation_mse_ratio", "sample_mean_mse_ratio",
    "prior_mean_mse_ratio", "generation_psnr", "sample_mean_psnr", "prior_mean_psnr",
    "mean_image_psnr", "sigma")] + [f"compute/{name}" for name in loop.COMPUTE]


def test_both_splits_hold_every_scalar_at_every_evaluation_step(run):
    model_dir, _ = run
    for split in held_out.SPLITS:
        scalars, _ = _scalars(model_dir / "eval" / split)
        for tag in EXPECTED_TAGS:
            assert sorted(scalars[tag]) == [0, 8, 16, 24], (split, tag)
            assert all(math.isfinite(v) for v in scalars[tag].values()), (split, tag)
        ratios = scalars["eval/generation_mse_ratio"]
        mse, baseline = scalars["eval/generation_mse"], scalars["eval/mean_image_mse"]
        assert ratios[24] == pytest.approx(mse[24] / baseline[24], rel=1e-5)
        cpu = scalars["compute/cpu_seconds"]
        assert cpu[0] < cpu[8] < cpu[16] < cpu[24]
        sigma = scalars["eval/sigma"]
        assert sigma[24] < sigma[0] == pytest.approx(schedules.ScheduleConfig().sigma_initial)
    _, accumulator = _scalars(model_dir / "eval" / "test")
    assert "eval/grid" in accumulator.Tags()["tensors"]
    lines = held_out.read_metrics(model_dir)
    assert [(e["step"], e["split"]) for e in lines] == [
        (step, split) for step in (0, 8, 16, 24) for split in ("test", "train")]


def test_held_out_figures_equal_evaluate_py_on_the_same_scenes_seeds_and_context(
        run, sample_dir, tmp_path):
    model_dir, result = run
    last = {e["split"]: e for e in held_out.read_metrics(model_dir) if e["step"] == 24}
    for split in held_out.SPLITS:
        evaluated = evaluation.evaluate(evaluation.EvalConfig(
            dataset=DATASET, data_dir=str(sample_dir), model_path=str(model_dir),
            output_dir=str(tmp_path / split), split=split, num_scenes=12, max_context=3,
            seed=5, batch_size=5, sigma=last[split]["sigma"], grid_scenes=0, progress=False))
        row = evaluated["per_context"][3]
        for name in ("neg_elbo_nats", "kl_nats", "nll_nats", "generation_mse",
                     "sample_mean_mse", "prior_mean_mse", "mean_image_mse",
                     "generation_mse_ratio", "sample_mean_mse_ratio", "prior_mean_mse_ratio",
                     "sample_std", "generation_psnr"):
            assert last[split][name] == pytest.approx(row[name], rel=1e-4, abs=1e-6), (
                split, name)
    assert last["test"]["generation_mse"] != last["train"]["generation_mse"]


def test_training_with_and_without_evaluation_ends_in_the_same_weights(run, sample_dir,
                                                                       tmp_path):
    model_dir, with_eval = run
    without = _train(_config(sample_dir, tmp_path / "plain", eval_every=0))
    assert not (tmp_path / "plain" / "eval").exists()
    assert without.metrics["loss"] == with_eval.metrics["loss"]
    a, _ = checkpoints.load_model(str(model_dir))
    b, _ = checkpoints.load_model(str(tmp_path / "plain"))
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_compute_seconds_count_on_across_a_resume(sample_dir, tmp_path):
    config = _config(sample_dir, tmp_path / "run", max_steps=8, eval_every=4, eval_scenes=5)
    _train(config)
    first = held_out.read_metrics(tmp_path / "run")[-1]
    _train(dataclasses.replace(config, max_steps=12))
    lines = held_out.read_metrics(tmp_path / "run")
    assert [e["step"] for e in lines if e["split"] == "test"] == [0, 4, 8, 12]
    last = lines[-1]
    assert last["cpu_seconds"] > first["cpu_seconds"]
    assert last["wall_seconds"] > first["wall_seconds"]
    assert last["eval_cpu_seconds"] > 0


def test_max_cpu_seconds_stops_and_saves(sample_dir, tmp_path):
    result = _train(_config(sample_dir, tmp_path, max_steps=10_000, eval_every=0,
                            max_cpu_seconds=2.0))
    assert 0 < result.step < 10_000
    assert result.checkpoint.endswith(f"ckpt-{result.step}")
    reader = tf.train.load_checkpoint(result.checkpoint)
    cpu, _, eval_cpu, _ = reader.get_tensor("compute_seconds/.ATTRIBUTES/VARIABLE_VALUE")
    assert cpu - eval_cpu >= 2.0


def test_no_test_split_or_too_few_scenes_is_one_clear_error_before_training(sample_dir,
                                                                          tmp_path):
    data = tmp_path / "data" / DATASET
    shutil.copytree(sample_dir / DATASET / "train", data / "train")
    with pytest.raises(held_out.HeldOutError, match="needs the test split.*--eval_every 0"):
        _train(_config(tmp_path / "data", tmp_path / "a"))
    assert not (tmp_path / "a" / "checkpoints").exists()
    with pytest.raises(held_out.HeldOutError, match="--eval_scenes 500 is more than the test "
                       "split holds: .* has 80 scenes"):
        _train(_config(sample_dir, tmp_path / "b", eval_scenes=500))
    with pytest.raises(ValueError, match="context_size 15 must be smaller"):
        _train(_config(sample_dir, tmp_path / "c", eval_context_size=15))


def test_an_old_checkpoint_without_compute_seconds_resumes(sample_dir, tmp_path):
    """A run directory written before compute seconds were saved goes on, counting from 0."""
    from gqn_tf.model import GQN
    from gqn_tf.training.step import TrainStep

    config = _config(sample_dir, tmp_path, max_steps=2, eval_every=0, max_context_size=None,
                     context_size=2)
    model, optimizer = GQN(TINY), schedules.make_optimizer()
    TrainStep(model, optimizer, 4)  # builds the optimizer
    checkpoints.write_run_config(tmp_path, TINY, dataset=DATASET, data_dir=str(sample_dir),
                                 train=config.to_dict(),
                                 schedule=dataclasses.asdict(schedules.ScheduleConfig()))
    checkpoints.checkpoint_manager(checkpoints.make_checkpoint(model, optimizer),
                                   str(tmp_path)).save(checkpoint_number=0)
    result = _train(config)
    assert result.step == 2
    reader = tf.train.load_checkpoint(result.checkpoint)
    assert reader.get_tensor("compute_seconds/.ATTRIBUTES/VARIABLE_VALUE")[0] > 0


def test_metrics_jsonl_keeps_the_last_line_of_a_step_evaluated_twice(tmp_path):
    (tmp_path / "eval").mkdir()
    lines = [{"step": 4, "split": "test", "x": 1}, {"step": 8, "split": "test", "x": 2},
             {"step": 4, "split": "test", "x": 3}]
    (tmp_path / "eval" / "metrics.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines))
    assert [e["x"] for e in held_out.read_metrics(tmp_path)] == [3, 2]


def test_the_jax_held_out_evaluation_names_a_missing_split_or_too_few_scenes(sample_dir,
                                                                          tmp_path):
    """The checks train_jax.py meets before training (here without running JAX)."""
    data = tmp_path / "data" / DATASET
    shutil.copytree(sample_dir / DATASET / "train", data / "train")
    with pytest.raises(held_out.HeldOutError, match="needs the test split"):
        held_out.shard_samplers(DATASET, str(tmp_path / "data"), 32, 0)
    samplers = held_out.shard_samplers(DATASET, str(sample_dir), 32, 0)
    config = held_out.HeldOutConfig(num_scenes=81, context_size=3)
    with pytest.raises(held_out.HeldOutError, match="--eval_scenes 81 is more than the test "
                       "split holds: .* has 80 scenes"):
        held_out.for_jax_run(None, config, None, samplers, model_dir=str(tmp_path))


def test_bad_held_out_and_budget_settings_are_named(sample_dir, tmp_path):
    for overrides, message in (({"eval_scenes": 0}, "eval_scenes must be at least 1"),
                               ({"eval_batch_size": 0}, "eval_batch_size must be at least 1"),
                               ({"eval_every": -1}, "eval_every must be >= 0"),
                               ({"max_cpu_seconds": -1.0}, "max_cpu_seconds must be >= 0")):
        with pytest.raises(ValueError, match=message):
            loop.check_config(_config(sample_dir, tmp_path, **overrides))
